"""One module per spanscope dashboard; shared building blocks live in `common`.

Each module exposes `UID` and `build()`, returning the SDK's Dashboard model.
"""
