// ICM_IMAGE_LOOP, before a function whose loops run over an image: on x86-64 the function is also compiled for
// AVX2 (x86-64-v3) and the best version is chosen when the module loads (GCC function multiversioning);
// elsewhere (aarch64: Jetson, DRIVE) the baseline is used. The compiled kernels of instances/ and processing/
// include it.
#ifndef ICM_DEPTH_ROS_INSTANCES_IMAGE_LOOP_H_
#define ICM_DEPTH_ROS_INSTANCES_IMAGE_LOOP_H_

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ICM_IMAGE_LOOP __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define ICM_IMAGE_LOOP
#endif

#endif  // ICM_DEPTH_ROS_INSTANCES_IMAGE_LOOP_H_
