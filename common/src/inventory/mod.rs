//! placeholder until the inventory lands
