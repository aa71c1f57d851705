"""Serving: the gateway process that answers HTTP predictions for deployed versions.

- :mod:`~mlops_jupyter.serving.gateway`: the server (``python -m mlops_jupyter.serving``);
- :mod:`~mlops_jupyter.serving.process`: start on demand, find, stop, status;
- :mod:`~mlops_jupyter.serving.client`: prediction and control-plane HTTP clients;
- :mod:`~mlops_jupyter.serving.traffic`: traffic-split rules and routing;
- :mod:`~mlops_jupyter.serving.auth`: per-tenant bearer tokens;
- :mod:`~mlops_jupyter.serving.cli`: the ``serve`` command.

Nothing here is imported by ``import mlops_jupyter``; the deployment object imports it
when first used.
"""
