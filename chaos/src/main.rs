//! `mt5-chaos`: the fault proxy as a process (`mt5-chaos proxy`).

fn main() {}
