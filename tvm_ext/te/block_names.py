"""Names of the pattern-sparse kernel's blocks and the annotations on them.

Schedules, tuning rules and tuning logs find the kernel's stages by these names, so they are
stable: ``ps_pad``, ``ps_conv_<p>`` / ``ps_conv_flat<g>`` / ``ps_conv_all``, ``ps_epilogue``
(:mod:`tvm_ext.te.pattern_conv` describes each).
"""

CONV_BLOCK_PREFIX = "ps_conv_"
EPILOGUE_BLOCK = "ps_epilogue"
PAD_BLOCK = "ps_pad"
#: ``schedule_rule`` of the conv stages and of the padding stage (MetaSchedule's
#: ``ApplyCustomRule`` finds the tuning rules by it)
SCHEDULE_RULE = "patsparse.pattern_conv2d"
PAD_RULE = "patsparse.pattern_pad"
#: epilogue block annotation: the max-pool window (schedules size the conv rows by it)
POOL_ATTR = "patsparse.pool"
