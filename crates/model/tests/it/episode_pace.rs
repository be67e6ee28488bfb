//! Episodes at the policy's pace: advanced on their own (endpoint policies) or in rounds
//! (batching policies), they give the same trajectories for a deterministic policy; tool
//! calls of many episodes run at once, on blocking threads, never on the async ones.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use scorch_agent::format::render_step;
use scorch_agent::llm::ChatOptions;
use scorch_agent::oracle::demonstration_rows;
use scorch_agent::suite::{Split, tasks};
use scorch_agent::tool::{CalcTool, Tool, ToolOutput};
use scorch_api::NoProgress;
use scorch_model::ModelError;
use scorch_model::episode::{Ended, EndedSink, Episode, Pace, Schedule, run_with};
use scorch_model::openai::ChatResult;
use scorch_model::policy::{Policy, Request};
use scorch_tables::{Author, Trajectory};

/// A deterministic policy that replays the oracle's demonstration of each question, one step
/// per request, after a delay that differs by request (0–15 ms).
struct Replay {
    demos: Vec<Trajectory>,
    independent: bool,
    requests: AtomicUsize,
}

#[async_trait]
impl Policy for Replay {
    fn name(&self) -> &str {
        "replay"
    }
    fn independent(&self) -> bool {
        self.independent
    }
    async fn complete_many(
        &self,
        requests: Vec<Request>,
        _options: &ChatOptions,
    ) -> Result<Vec<ChatResult>, ModelError> {
        let mut out = Vec::new();
        for Request { messages: chat, .. } in requests {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let question = &chat[1].content;
            let demo = self.demos.iter().find(|d| &d.question == question).unwrap();
            let done = chat
                .iter()
                .filter(|m| m.role == scorch_agent::format::Role::Assistant)
                .count();
            let text = demo.steps.get(done).map(render_step).unwrap_or_default();
            let delay = (question.len() * 7 + done * 13) % 16;
            tokio::time::sleep(Duration::from_millis(delay as u64)).await;
            out.push(ChatResult {
                text,
                prompt_tokens: chat.len() as u64,
                completion_tokens: 1,
                cached_tokens: 0,
                finish_reason: "stop".into(),
                logprobs: None,
                tokens: None,
            });
        }
        Ok(out)
    }
}

fn episodes(n: u64) -> (Vec<Episode>, Vec<Trajectory>) {
    let ts = tasks(3, Split::Train, 0, n);
    let demos = demonstration_rows(&ts);
    let eps = ts
        .into_iter()
        .map(|t| Episode::new(t, Box::new(CalcTool), None))
        .collect();
    (eps, demos)
}

/// Keeps every episode it is told of.
#[derive(Default)]
struct Record(std::sync::Mutex<Vec<(usize, Ended)>>);

#[async_trait]
impl EndedSink for Record {
    async fn ended(&self, index: usize, ended: Ended) -> Result<(), ModelError> {
        self.0.lock().unwrap().push((index, ended));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_episodes_give_the_lock_step_trajectories() {
    let mut results = Vec::new();
    for (independent, pace) in [(false, Pace::LockStep), (true, Pace::Independent)] {
        let (mut eps, demos) = episodes(40);
        let record = Record::default();
        let policy = Replay {
            demos,
            independent,
            requests: AtomicUsize::new(0),
        };
        let tokens = run_with(
            &policy,
            &mut eps,
            "sys",
            &ChatOptions::greedy(1024),
            Author::Student,
            &NoProgress,
            Schedule {
                pace,
                tool_workers: Some(4),
                ended: Some(&record),
            },
        )
        .await
        .unwrap();
        // Each episode was told once, as it ended.
        let mut told = record.0.into_inner().unwrap();
        told.sort_by_key(|(i, _)| *i);
        let want: Vec<(usize, Ended)> = eps
            .iter()
            .enumerate()
            .map(|(i, e)| (i, e.ended().unwrap()))
            .collect();
        assert_eq!(told, want, "{pace:?}");
        let rows: Vec<Trajectory> = eps
            .iter()
            .enumerate()
            .map(|(i, e)| e.trajectory("replay", i as u32))
            .collect();
        assert!(
            rows.iter().filter(|t| t.correct).count() >= 35,
            "the replay solves them"
        );
        results.push((rows, tokens, policy.requests.load(Ordering::Relaxed)));
    }
    assert_eq!(results[0], results[1]);
}

/// Steps of a plan, three sleeping calls and an answer; counts the calls in flight at once.
struct Sleepy {
    in_flight: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    sleep: Duration,
}

impl Tool for Sleepy {
    fn execute(&mut self, code: &str) -> ToolOutput {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(self.sleep);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let done = code.contains("final");
        ToolOutput {
            observation: "ok".into(),
            final_answer: done.then(|| "1".into()),
            failed: false,
        }
    }
}

/// Plan, three `sleep` steps, then `final`.
struct Script;

#[async_trait]
impl Policy for Script {
    fn name(&self) -> &str {
        "script"
    }
    fn independent(&self) -> bool {
        true
    }
    async fn complete_many(
        &self,
        requests: Vec<Request>,
        _options: &ChatOptions,
    ) -> Result<Vec<ChatResult>, ModelError> {
        Ok(requests
            .iter()
            .map(|Request { messages: chat, .. }| {
                let done = chat
                    .iter()
                    .filter(|m| m.role == scorch_agent::format::Role::Assistant)
                    .count();
                let text = match done {
                    0 => "Plan: sleep three times".to_owned(),
                    1..=3 => "Thought: wait\nCode: sleep".to_owned(),
                    _ => "Thought: done\nCode: final".to_owned(),
                };
                ChatResult {
                    text,
                    prompt_tokens: 1,
                    completion_tokens: 1,
                    cached_tokens: 0,
                    finish_reason: "stop".into(),
                    logprobs: None,
                    tokens: None,
                }
            })
            .collect())
    }
}

fn sleepy_episodes(n: u64, sleep: Duration) -> (Vec<Episode>, Arc<AtomicUsize>) {
    let most = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let eps = tasks(5, Split::Train, 0, n)
        .into_iter()
        .map(|t| {
            let tool = Sleepy {
                in_flight: in_flight.clone(),
                most: most.clone(),
                sleep,
            };
            Episode::new(t, Box::new(tool), Some(8))
        })
        .collect();
    (eps, most)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_calls_of_many_episodes_run_at_once() {
    for pace in [Pace::Independent, Pace::LockStep] {
        let (mut eps, most) = sleepy_episodes(32, Duration::from_millis(50));
        run_with(
            &Script,
            &mut eps,
            "sys",
            &ChatOptions::greedy(1024),
            Author::Student,
            &NoProgress,
            Schedule {
                pace,
                tool_workers: Some(16),
                ended: None,
            },
        )
        .await
        .unwrap();
        assert!(eps.iter().all(|e| e.final_answer.as_deref() == Some("1")));
        // 32 episodes, 4 calls each: with one call at a time this would be 1; the pool allows
        // 16, and the calls of different episodes do overlap that far.
        assert_eq!(most.load(Ordering::SeqCst), 16, "{pace:?}");
    }
}

/// On a runtime of one thread, a slow tool call does not stop another task from running.
#[test]
fn a_slow_tool_never_blocks_the_async_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut eps, _) = sleepy_episodes(2, Duration::from_millis(400));
        let beats = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
        let b = beats.clone();
        let stop = Arc::new(AtomicUsize::new(0));
        let s = stop.clone();
        let heart = tokio::spawn(async move {
            while s.load(Ordering::SeqCst) == 0 {
                b.lock().unwrap().push(Instant::now());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        run_with(
            &Script,
            &mut eps,
            "sys",
            &ChatOptions::greedy(1024),
            Author::Student,
            &NoProgress,
            Schedule {
                pace: Pace::Independent,
                tool_workers: Some(2),
                ended: None,
            },
        )
        .await
        .unwrap();
        stop.store(1, Ordering::SeqCst);
        heart.await.unwrap();
        let beats = beats.lock().unwrap();
        let longest = beats
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        // Eight calls of 400 ms ran; the heartbeat kept its 10 ms pace throughout (a blocked
        // runtime would show a gap of 400 ms or more).
        assert!(beats.len() > 100, "{} beats", beats.len());
        assert!(longest < Duration::from_millis(200), "{longest:?}");
    });
}
