"""Public fakes: fake sysfs/procfs/debugfs trees of catalogue boards with real kernel write semantics."""
