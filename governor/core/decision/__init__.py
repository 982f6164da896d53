"""The decision: the governor machine (events in, actions out), the optimiser over operating points and
what it learns from outcomes (residuals, margins, contention). Pure: no I/O, no clock."""
