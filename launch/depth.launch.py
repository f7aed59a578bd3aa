"""Start depth_node for one camera, or one node per camera in its own namespace.

    ros2 launch icm_depth_ros depth.launch.py model_path:=/models/icm.engine
    ros2 launch icm_depth_ros depth.launch.py model_path:=/models/icm.onnx backend:=onnxruntime \
        cameras:=front,left,right image_topic:=image_raw

Arguments:
    params_file        parameters YAML (default: this package's config/depth.yaml)
    model_path         exported model (.onnx or TensorRT .engine); overrides the params file when set
    backend            auto | tensorrt | onnxruntime; overrides the params file when set
    cameras            comma-separated camera namespaces; one node in each (empty: one node, no namespace)
    image_topic        what the node's 'image' input is remapped to, relative to the camera namespace
    camera_info_topic  what 'camera_info' is remapped to
    shm_transport      true: use config/fastdds_shm.xml (shared memory, 16 MB segment) for Fast DDS

The launch imports live inside generate_launch_description so that the helpers below can be
imported (and tested) where the ROS launch packages are not installed.
"""
import os

PACKAGE = "icm_depth_ros"
EXECUTABLE = "depth_node"
PARAMS_FILE = os.path.join("config", "depth.yaml")
SHM_PROFILE = os.path.join("config", "fastdds_shm.xml")
OVERRIDABLE_PARAMETERS = ("model_path", "backend")


def camera_namespaces(cameras: str) -> list[str]:
    """'front, left,right' -> ['front', 'left', 'right']; '' -> [''] (one node, no namespace)."""
    names = [name.strip().strip("/") for name in cameras.split(",") if name.strip().strip("/")]
    return names or [""]


def node_settings(cameras: str, image_topic: str, camera_info_topic: str) -> list[dict]:
    """One dict per node: namespace, remappings (relative names, so they resolve inside the namespace)."""
    remappings = [(source, target) for source, target in (("image", image_topic), ("camera_info", camera_info_topic))
                  if target and target != source]
    return [{"namespace": namespace, "remappings": remappings} for namespace in camera_namespaces(cameras)]


def parameter_overrides(values: dict) -> dict:
    """Launch arguments that override the params file, only where given."""
    return {name: values[name] for name in OVERRIDABLE_PARAMETERS if values.get(name)}


def generate_launch_description():
    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    share = get_package_share_directory(PACKAGE)

    def start_nodes(context):
        value = {name: LaunchConfiguration(name).perform(context) for name in (
            "params_file", "cameras", "image_topic", "camera_info_topic", *OVERRIDABLE_PARAMETERS)}
        parameters = [value["params_file"]]
        overrides = parameter_overrides(value)
        if overrides:
            parameters.append(overrides)
        return [
            Node(package=PACKAGE, executable=EXECUTABLE, name="depth_node", namespace=spec["namespace"],
                 parameters=parameters, remappings=spec["remappings"], output="screen", emulate_tty=True)
            for spec in node_settings(value["cameras"], value["image_topic"], value["camera_info_topic"])
        ]

    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, PARAMS_FILE)),
        DeclareLaunchArgument("model_path", default_value="", description="exported .onnx or TensorRT .engine"),
        DeclareLaunchArgument("backend", default_value="", description="auto | tensorrt | onnxruntime"),
        DeclareLaunchArgument("cameras", default_value="", description="comma-separated camera namespaces"),
        DeclareLaunchArgument("image_topic", default_value="image"),
        DeclareLaunchArgument("camera_info_topic", default_value="camera_info"),
        DeclareLaunchArgument("shm_transport", default_value="true"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", os.path.join(share, SHM_PROFILE),
                               condition=IfCondition(LaunchConfiguration("shm_transport"))),
        OpaqueFunction(function=start_nodes),
    ])
