"""Alerts: rules on a model's monitoring metrics that fire, act and keep a history.

- :mod:`~mlops_jupyter.monitoring.alerts.grammar`: the condition language (parser), over
  :mod:`~mlops_jupyter.monitoring.alerts.tree` (the parsed tree and its evaluation);
- :mod:`~mlops_jupyter.monitoring.alerts.durations`: ``"5m"``-style durations;
- :mod:`~mlops_jupyter.monitoring.alerts.lifecycle`: the pending/firing state machine;
- :mod:`~mlops_jupyter.monitoring.alerts.actions`: built-in and registered actions, delivery;
- :mod:`~mlops_jupyter.monitoring.alerts.engine`: rules in the store, evaluated and fired;
- :mod:`~mlops_jupyter.monitoring.alerts.scheduler`: the gateway's background pass.

Users reach them through :class:`~mlops_jupyter.monitoring.facade.ModelMonitoring`
(``set_alert``, ``evaluate_alerts``, ``register_action``, ``alerts``); nothing in this
package imports that facade.
"""
