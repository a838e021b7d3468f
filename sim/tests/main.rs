//! Integration tests of the OpenStack simulator over real HTTP on loopback.

mod cinder;
mod cinder_types;
mod faults;
mod glance;
mod helpers;
mod keystone;
mod log;
mod nova;
mod nova_catalog;
mod restore;
mod roles;
mod tenancy;
mod trusts;
