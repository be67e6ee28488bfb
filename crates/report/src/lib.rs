//! SCoRe's results from scorch runs: per-arm accuracy tables with Wilson intervals, paired
//! comparisons between arms across seeds, the statistics behind them, and plots.
#![deny(missing_docs)]

pub mod compare;
pub mod plots;
pub mod preview;
pub mod rows;
pub mod stats;
pub mod summary;
pub mod text;
pub mod trend;
