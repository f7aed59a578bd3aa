"""Training side of icm_depth_ros: the ICM network, its losses, datasets, training, evaluation, export.

Knows PyTorch and nothing of ROS. May import the pure-Python contract modules of icm_depth_ros/
(model contract, metric definitions) so that both halves share one definition.
"""
