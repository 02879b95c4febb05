"""The live dashboard (Streamlit, `clickrec dashboard`): what the stream, the lake and the model registry
say right now. ``data`` reads and shapes (plain functions), ``charts`` draws, ``app`` lays it out."""
