"""Client library for the dnn-governor daemon. Depends on governor.core.protocol only."""
