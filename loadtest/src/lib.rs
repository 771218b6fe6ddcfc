//! The simulated fleet (used by `fleetwire demo`) and, later, the load-test driver.
