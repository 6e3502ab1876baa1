"""Opt-in remediation (#15): the plan of the one diagnostic setting that makes a registry
compliant (`plan`, pure), writing it and recording the action (`apply`), the timer's step
after a run (`auto`) and the action documents (`documents`)."""
