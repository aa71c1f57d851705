"""The notebook layer over the parts: ``%mlops`` magics and cell autolog (:mod:`.magics`),
ipywidgets panels (:mod:`.widgets`) and executed notebooks as reports (:mod:`.reports`).
It goes through :mod:`mlops_jupyter.api`; nothing below imports it."""
