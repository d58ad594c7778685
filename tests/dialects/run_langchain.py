"""A LangChain RAG chain (retriever over embeddings, prompt, chat model) under one instrumentation.

`python run_langchain.py SETUP OUT.json`. Only the LangChain instrumentor is installed in its venv,
so the spans are LangChain's alone (no openai-SDK instrumentation underneath).
"""
import sys

from harness import API_KEY, URL, app_span, run
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

SETUP = sys.argv[1]


def instrument() -> list[str]:
    if SETUP == "langchain-openllmetry":
        from opentelemetry.instrumentation.langchain import LangchainInstrumentor
        LangchainInstrumentor().instrument()
        return ["opentelemetry-instrumentation-langchain"]
    if SETUP == "langchain-openinference":
        from openinference.instrumentation.langchain import LangChainInstrumentor
        LangChainInstrumentor().instrument()
        return ["openinference-instrumentation-langchain"]
    raise SystemExit(f"unknown setup {SETUP}")


packages = ["langchain-core", "langchain-openai", "openai", "opentelemetry-sdk"] + instrument()
openai_args = dict(base_url=URL + "/v1", api_key=API_KEY, max_retries=0)
embeddings = OpenAIEmbeddings(model="text-embedding-3-small", check_embedding_ctx_length=False, **openai_args)
store = InMemoryVectorStore(embeddings)
prompt = ChatPromptTemplate.from_messages([
    ("system", "Answer from the context:\n{context}"), ("human", "{question}")])


def chain(llm):
    retriever = store.as_retriever(search_kwargs={"k": 2})
    docs = retriever | (lambda found: "\n".join(d.page_content for d in found))
    return {"context": docs, "question": RunnablePassthrough()} | prompt | llm | StrOutputParser()


def index():
    store.add_texts(["Sunny in Lisbon today.", "Rain in Oslo today."])


def chat():
    chain(ChatOpenAI(model="gpt-4o-mini", **openai_args)).invoke("What is the weather in Lisbon?")


def stream():
    for _ in chain(ChatOpenAI(model="gpt-4o-mini", stream_usage=True, **openai_args)).stream("Weather?"):
        pass


def reasoning():
    chain(ChatOpenAI(model="o4-mini", reasoning_effort="low", **openai_args)).invoke("Weather?")


def error():
    chain(ChatOpenAI(model="gpt-4o-mini-ratelimited", **openai_args)).invoke("Weather?")


def nested():
    with app_span():
        chat()


run(SETUP, {"index": index, "chat": chat, "stream": stream, "reasoning": reasoning, "error": error,
            "nested": nested}, packages)
