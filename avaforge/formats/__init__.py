"""Exact readers and writers for every file format avaforge produces or consumes.

Each module owns one format: ``ava_csv`` (annotation and excluded-timestamp csv),
``pbtxt`` (action_list.pbtxt), ``proposals`` (dense proposals pkl), ``timeline``
(30 fps keyframe schedule, rawframe paths, included_timestamps.txt), ``via3``
(VIA 3 projects) and ``actions`` (the user's action list).
"""
