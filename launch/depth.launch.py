"""Start depth_node for one camera, one node for several cameras (default), or one node per camera on request.

    ros2 launch icm_depth_ros depth.launch.py model_path:=/models/icm.engine
    ros2 launch icm_depth_ros depth.launch.py model_path:=/models/icm.onnx backend:=onnxruntime \
        cameras:=front,left,right image_topic:=image_raw

Arguments (ARGUMENTS below; `ros2 launch icm_depth_ros depth.launch.py --show-args` prints them):
    params_file        parameters YAML (default: this package's config/depth.yaml); must exist
    model_path         exported model (.onnx or TensorRT .engine); overrides the params file when set
    backend            auto | tensorrt | onnxruntime; overrides the params file when set
    cameras            comma-separated camera namespaces, all served by one node (its cameras parameter;
                       one model, batched where the model allows); empty: one camera, no namespace
    process_per_camera true: one node process per camera namespace instead (each loads its own model)
    image_topic        what the node's 'image' input is remapped to, relative to the camera namespace
    camera_info_topic  what 'camera_info' is remapped to
    shm_transport      true: the node applies config/fastdds_shm_udp.xml (16 MB shared memory + UDPv4) unless
                       you chose a Fast DDS profile; false: Fast DDS defaults

The Fast DDS profile is the node's own choice (icm_depth_ros/node/transport.py), made the same way however it is
started; this file sets no environment variable, so a FASTDDS_DEFAULT_PROFILES_FILE you exported is kept.

The launch imports live inside generate_launch_description so that the helpers below can be
imported (and tested) where the ROS launch packages are not installed.
"""
import os

PACKAGE = "icm_depth_ros"
EXECUTABLE = "depth_node"
PARAMS_FILE = os.path.join("config", "depth.yaml")
FASTDDS_PROFILE = os.path.join("config", "fastdds_shm_udp.xml")
OVERRIDABLE_PARAMETERS = ("model_path", "backend")
OPT_OUT_VARIABLE = "ICM_DEPTH_ROS_FASTDDS_PROFILE"  # read by the node (transport.py)
# name: (default, description); a default of None = the installed config/depth.yaml
ARGUMENTS = {
    "params_file": (None, "parameters YAML for every node (must exist); default: the package's config/depth.yaml"),
    "model_path": ("", "exported .onnx or TensorRT .engine; overrides the params file when set"),
    "backend": ("", "auto | tensorrt | onnxruntime; overrides the params file when set"),
    "cameras": ("", "comma-separated camera namespaces (front,left,right), all served by one node unless "
                    "process_per_camera; empty = one camera, no namespace"),
    "process_per_camera": ("false", "true: one node process per camera namespace (each loads its own model)"),
    "image_topic": ("image", "what each node's 'image' input is remapped to, relative to its camera namespace "
                             "(e.g. image_raw)"),
    "camera_info_topic": ("camera_info", "what each node's 'camera_info' input is remapped to"),
    "shm_transport": ("true", "true: the node applies config/fastdds_shm_udp.xml (16 MB shared memory + UDPv4) "
                              "unless you set FASTDDS_DEFAULT_PROFILES_FILE; false: Fast DDS defaults"),
}


def camera_namespaces(cameras: str) -> list[str]:
    """'front, left,right' -> ['front', 'left', 'right']; '' -> [''] (one node, no namespace)."""
    names = [name.strip().strip("/") for name in cameras.split(",") if name.strip().strip("/")]
    return names or [""]


def node_settings(cameras: str, image_topic: str, camera_info_topic: str, process_per_camera: bool = False) -> list[dict]:
    """One dict per node: namespace, remappings (relative names, so they resolve inside the namespace) and
    parameters (the node's ``cameras`` when one node serves several)."""
    pairs = [(source, target) for source, target in (("image", image_topic), ("camera_info", camera_info_topic))
             if target and target != source]
    namespaces = camera_namespaces(cameras)
    if process_per_camera or namespaces == [""]:
        return [{"namespace": namespace, "remappings": pairs, "parameters": {}} for namespace in namespaces]
    remappings = [(f"{camera}/{source}", f"{camera}/{target}") for camera in namespaces for source, target in pairs]
    return [{"namespace": "", "remappings": remappings, "parameters": {"cameras": namespaces}}]


def checked_params_file(path: str) -> str:
    """The params file, or FileNotFoundError naming it (launch reports it and exits non-zero)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"params_file:={path} does not exist; give an existing parameters YAML "
                                "(or leave params_file out for the package's config/depth.yaml)")
    return path


def node_environment(shm_transport: str) -> dict:
    """Extra environment of each node process: the opt-out of the node's Fast DDS profile, when asked."""
    return {} if shm_transport.strip().lower() in ("true", "1", "yes", "on") else {OPT_OUT_VARIABLE: "off"}


def parameter_overrides(values: dict) -> dict:
    """Launch arguments that override the params file, only where given."""
    return {name: values[name] for name in OVERRIDABLE_PARAMETERS if values.get(name)}


def generate_launch_description():
    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    share = get_package_share_directory(PACKAGE)

    def start_nodes(context):
        value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
        parameters = [checked_params_file(value["params_file"])]
        overrides = parameter_overrides(value)
        if overrides:
            parameters.append(overrides)
        per_camera = value["process_per_camera"].strip().lower() in ("true", "1", "yes", "on")
        return [
            Node(package=PACKAGE, executable=EXECUTABLE, name="depth_node", namespace=spec["namespace"],
                 parameters=parameters + ([spec["parameters"]] if spec["parameters"] else []),
                 remappings=spec["remappings"], output="screen", emulate_tty=True,
                 additional_env=node_environment(value["shm_transport"]))
            for spec in node_settings(value["cameras"], value["image_topic"], value["camera_info_topic"], per_camera)
        ]

    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=os.path.join(share, PARAMS_FILE) if default is None else default,
                                description=description) for name, (default, description) in ARGUMENTS.items()),
        OpaqueFunction(function=start_nodes),
    ])
