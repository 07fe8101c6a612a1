//! tart-sync library
