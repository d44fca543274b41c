//! PNG plots of a scenario trace (to be written).
