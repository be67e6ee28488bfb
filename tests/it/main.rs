//! The integration tests of `scorch`: one binary (one link), a module per
//! concern.

mod bad_workflows;
mod common;
mod crash;
mod data_commands;
mod engine;
mod experiment_smoke;
mod gc_race;
mod logs;
mod lora;
mod memory_plan;
mod resume;
mod rl_server;
mod s3;
mod sandbox_run;
mod scheduler;
mod schema;
mod score_smoke;
mod secrets;
mod serve;
mod slurm;
mod stats_reference;
mod torch_trainer;
mod trackers;
mod ui;
mod worker;
