//! The OpenStack clients: parsing the real API samples, and calls against the simulator.

mod against_sim;
mod paths;
mod real_cloud;
mod samples;
