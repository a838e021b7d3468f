//! The OpenStack clients: parsing the real API samples, and calls against the simulator.

mod real_cloud;
mod samples;
