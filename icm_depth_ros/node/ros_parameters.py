"""depth_node's parameters on the ROS side: declaring them, the params file's names, run-time sets.

* Declaring (``declare_node_parameters``): a params-file or ``-p`` value is checked against the table
  before rclpy sees it, so ``max_depth: 80`` (an integer for a double, as YAML is written) is taken as
  80.0 and ``input_qos_depth: "one"`` gives one line naming the parameter, the value and the type
  wanted (ParameterError) instead of rclpy's InvalidParameterTypeException traceback. Names the node
  does not declare are warned about with the nearest declared name.
* Run-time sets (``ParameterUpdates``, the node's on-set-parameters callback): every change is checked
  at once; LIVE_PARAMETERS are applied between two frames; the others are refused while the node is
  configured ("takes effect at configure: ..."), and accepted while it is unconfigured, where configure
  reads them. Nothing is answered "successful" without an effect.

rclpy Humble has neither ``add_pre_set_parameters_callback`` nor ``add_post_set_parameters_callback``
(both from Iron), so the live values are applied inside the on-set callback, after every check passed;
its type check also runs before that callback, so ``ros2 param set ... max_depth 80`` is refused by
rclpy ("Wrong parameter type") where the params file's 80 is accepted: write 80.0 there.
"""
from __future__ import annotations

import difflib
from dataclasses import fields, replace

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult

from icm_depth_ros.node.node_parameters import (
    LIVE_PARAMETERS, PARAMETERS, PIPELINE_PARAMETERS, STARTUP_PARAMETERS, NodeSettings, check_values, coerce_value,
)

# Declared by rclpy itself, or by rclpy for QoS overrides; not ours to warn about.
ROS_OWN_PARAMETERS = ("use_sim_time", "start_type_description_service")
ROS_OWN_PREFIXES = ("qos_overrides.",)
CONFIGURE_HINT = "takes effect at configure: deactivate, cleanup, configure, activate"


class ParameterError(ValueError):
    """A parameter value the node cannot start with; the text is the one line to show."""


def declare_node_parameters(node) -> list[str]:
    """Declare every parameter of PARAMETERS on ``node`` with its description; returns warnings for the
    names given to the node that it does not declare. ParameterError for a value of the wrong type."""
    # rclpy keeps the params file's and -p values in Node._parameter_overrides (Humble to Rolling) and
    # offers no public way to see them before declaring; reading them is what lets us accept 80 for 80.0.
    overrides = node._parameter_overrides
    problems = []
    for name, (default, allowed, meaning) in PARAMETERS.items():
        value = default
        if name in overrides:
            try:
                value = coerce_value(name, overrides[name].value)
            except ValueError as error:
                problems.append(str(error))
        text = meaning + (f" (one of: {', '.join(allowed)})" if allowed else "")
        text += "; applied live" if name in LIVE_PARAMETERS else "; read at configure"
        node.declare_parameter(name, value, ParameterDescriptor(description=text), ignore_override=True)
    if problems:
        raise ParameterError("; ".join(problems))
    return [unknown_parameter_warning(name) for name in sorted(overrides) if is_unknown(name)]


def is_unknown(name: str) -> bool:
    return name not in PARAMETERS and name not in ROS_OWN_PARAMETERS and not name.startswith(ROS_OWN_PREFIXES)


def unknown_parameter_warning(name: str) -> str:
    nearest = difflib.get_close_matches(name, list(PARAMETERS), n=1, cutoff=0.6)
    hint = f"; did you mean '{nearest[0]}'?" if nearest else " (docs: the README's parameter table)"
    return f"parameter '{name}' is not a depth_node parameter and is ignored{hint}"


def check_change(current: dict[str, object], changes: dict[str, object], configured: bool) -> str | None:
    """Why ``changes`` (name -> value, types already checked by rclpy) cannot be set now, or None."""
    try:
        check_values({**current, **changes})
    except ValueError as error:
        return str(error)
    for name in changes:
        if name in STARTUP_PARAMETERS:
            return f"{name} is read when the node starts: set it in the params file or with -p"
        if configured and name not in LIVE_PARAMETERS:
            live = ", ".join(sorted(LIVE_PARAMETERS))
            return (f"{name} {CONFIGURE_HINT} (set it between cleanup and configure); "
                    f"parameters applied live: {live}")
    return None


class ParameterUpdates:
    """The on-set-parameters callback of ``node`` (a DepthNode): checks, then applies live changes.

    Reads ``node.pipeline`` (None while unconfigured), ``node.settings`` and ``node.channels``."""

    def __init__(self, node):
        self.node = node

    def __call__(self, parameters) -> SetParametersResult:
        changes = {parameter.name: parameter.value for parameter in parameters if parameter.name in PARAMETERS}
        current = {name: self.node.get_parameter(name).value for name in PARAMETERS}
        pipeline = self.node.pipeline
        reason = check_change(current, changes, configured=pipeline is not None)
        if reason is None and pipeline is not None:
            reason = depth_range_problem(pipeline, {**current, **changes})
        if reason is not None:
            self.node.get_logger().warning(f"parameter change refused: {reason}")
            return SetParametersResult(successful=False, reason=reason)
        listed = ", ".join(f"{name}={value!r}" for name, value in changes.items())
        if pipeline is not None and changes:
            self.apply_live(changes)
            self.node.get_logger().info(f"applied live: {listed}")
        elif changes:
            self.node.get_logger().info(f"{listed} will be used at configure")
        return SetParametersResult(successful=True)

    def apply_live(self, changes: dict[str, object]) -> None:
        node_fields = {field.name for field in fields(NodeSettings)}
        settings = replace(self.node.settings, **{k: v for k, v in changes.items() if k in node_fields})
        self.node.settings = settings
        for channel in self.node.channels:
            channel.update_settings(settings)
        pipeline_changes = {PIPELINE_PARAMETERS[k]: v for k, v in changes.items() if k in PIPELINE_PARAMETERS}
        if pipeline_changes:
            update_pipeline(self.node.pipeline, pipeline_changes)


def depth_range_problem(pipeline, values: dict[str, object]) -> str | None:
    low, high = effective_depth_range(pipeline, values["min_depth"], values["max_depth"])
    if not 0 < low < high:
        return (f"min_depth={values['min_depth']}, max_depth={values['max_depth']} give the range [{low}, {high}] m "
                f"(0 = the model's {pipeline.backend.info.min_depth}..{pipeline.backend.info.max_depth}); need 0 < min < max")
    return None


def effective_depth_range(pipeline, min_depth: float, max_depth: float) -> tuple[float, float]:
    info = pipeline.backend.info
    return (min_depth or info.min_depth), (max_depth or info.max_depth)


def update_pipeline(pipeline, changes: dict[str, object]) -> None:
    """PipelineConfig field -> value on a running pipeline; each frame reads these when it starts."""
    pipeline.config = replace(pipeline.config, **changes)
    pipeline.min_depth, pipeline.max_depth = effective_depth_range(pipeline, pipeline.config.min_depth,
                                                                   pipeline.config.max_depth)
