"""A LlamaIndex query engine (vector index over OpenAI embeddings, OpenAI LLM) under OpenInference.

`python run_llamaindex.py SETUP OUT.json`.
"""
import sys

from harness import API_KEY, URL, app_span, run
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.llms import ChatMessage
from llama_index.embeddings.openai import OpenAIEmbedding
from llama_index.llms.openai import OpenAI
from openinference.instrumentation.llama_index import LlamaIndexInstrumentor

SETUP = sys.argv[1]
LlamaIndexInstrumentor().instrument()
openai_args = dict(api_base=URL + "/v1", api_key=API_KEY, max_retries=0)
Settings.embed_model = OpenAIEmbedding(model="text-embedding-3-small", **openai_args)
Settings.llm = OpenAI(model="gpt-4o-mini", **openai_args)
state = {}


def index():
    state["index"] = VectorStoreIndex.from_documents(
        [Document(text="Sunny in Lisbon today."), Document(text="Rain in Oslo today.")])


def chat():
    state["index"].as_query_engine(similarity_top_k=2).query("What is the weather in Lisbon?")


def stream():
    for _ in Settings.llm.stream_chat([ChatMessage(role="user", content="What is the weather?")]):
        pass


def reasoning():
    OpenAI(model="o4-mini", reasoning_effort="low", **openai_args).chat(
        [ChatMessage(role="user", content="What is the weather?")])


def error():
    OpenAI(model="gpt-4o-mini", api_base=URL + "/ratelimited/v1", api_key=API_KEY, max_retries=0).chat(
        [ChatMessage(role="user", content="What is the weather?")])


def nested():
    with app_span():
        chat()


run(SETUP, {"index": index, "chat": chat, "stream": stream, "reasoning": reasoning, "error": error,
            "nested": nested},
    ["llama-index-core", "llama-index-llms-openai", "openai", "openinference-instrumentation-llama-index",
     "opentelemetry-sdk"])
