"""The Gradio UI: one module per tab (layout, wiring and thin handlers over ``demo_core.engine``),
``status`` for the status line and panel, ``common`` for what the tabs share."""
