//! Mentored solving asks the teacher about every open task at once (an endpoint teacher's
//! requests overlap up to its concurrency) and applies the answers in task order: the
//! results equal the oracle's asked one task at a time.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::student;
use scorch_agent::oracle::Oracle;
use scorch_agent::suite::{Split, tasks};
use scorch_agent::teacher::{Cost, Teacher, TeacherError, Verdict};
use scorch_api::NoProgress;
use scorch_correct::{mentor, mentor_with};
use scorch_kinds::correct::CorrectParams;
use scorch_tables::{Step, Task};

/// The oracle, slowed down as a remote teacher is, counting the judgements in flight.
struct Remote {
    in_flight: AtomicUsize,
    most: AtomicUsize,
}

#[scorch_api::reexports::async_trait]
impl Teacher for Remote {
    fn name(&self) -> &str {
        "remote"
    }
    async fn demonstrate(
        &self,
        task: &Task,
    ) -> Result<(scorch_agent::teacher::Demonstration, Cost), TeacherError> {
        Oracle.demonstrate(task).await
    }
    async fn judge(&self, task: &Task, steps: &[Step]) -> Result<(Verdict, Cost), TeacherError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Oracle.judge(task, steps).await
    }
    async fn repair(
        &self,
        task: &Task,
        prefix: &[Step],
        wrong: &Step,
        analysis: &str,
    ) -> Result<(Step, Cost), TeacherError> {
        Oracle.repair(task, prefix, wrong, analysis).await
    }
    async fn equivalent(
        &self,
        task: &Task,
        prefix: &[Step],
        a: &Step,
        b: &Step,
    ) -> Result<(bool, Cost), TeacherError> {
        Oracle.equivalent(task, prefix, a, b).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_teacher_is_asked_about_every_open_task_at_once() {
    let (url, _) = student().await;
    let tasks = tasks(3, Split::Train, 0, 12);
    let p: CorrectParams = serde_json::from_value(serde_json::json!({
        "student": {"kind": "endpoint", "base_url": url, "model": "m", "concurrency": 4},
        "max_repairs": 2,
    }))
    .unwrap();
    let remote = Arc::new(Remote {
        in_flight: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
    });
    let overlapped = mentor_with(
        &p,
        remote.clone(),
        &tasks,
        (None, None),
        5,
        &NoProgress,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        remote.most.load(Ordering::SeqCst),
        tasks.len(),
        "the first round judges all twelve tasks at once"
    );
    let plain = mentor(&p, &tasks, (None, None), 5, &NoProgress, None)
        .await
        .unwrap();
    assert_eq!(
        overlapped, plain,
        "the same trajectories, repairs and costs"
    );
    assert!(
        plain.1.iter().any(|r| !r.repairs.is_empty()),
        "some repairs made"
    );
}
