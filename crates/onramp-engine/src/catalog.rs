//! Task types and stage policies as the engine uses them, derived once from the config.

use onramp_config::{Config, TaskConfig, TaskKind, references};
use onramp_core::backoff::Backoff;
use onramp_core::outcome::RetryPolicy;
use onramp_core::{StageName, TaskTypeName};
use onramp_store::NewStep;
use std::collections::BTreeMap;
use std::time::Duration;

/// What the engine knows about stages and task types.
#[derive(Debug, Clone)]
pub struct Catalog {
    tasks: BTreeMap<TaskTypeName, TaskConfig>,
    stages: BTreeMap<StageName, StagePolicy>,
}

/// How a stage runs its steps.
#[derive(Debug, Clone, PartialEq)]
pub struct StagePolicy {
    /// Steps run at once per process.
    pub concurrency: usize,
    /// Retries and backoff.
    pub retry: RetryPolicy,
    /// Lease length.
    pub visibility_timeout: Duration,
    /// Longest wait in the queue before dead-lettering.
    pub pickup_timeout: Duration,
}

/// Task kinds this version can run.
pub const SUPPORTED_KINDS: &[&str] = &["http", "sim", "human", "signal", "delay"];

impl Catalog {
    /// Derives the catalog from a validated config.
    pub fn from_config(config: &Config) -> Catalog {
        let stages = config
            .stage_names()
            .into_iter()
            .map(|name| {
                let s = config.stage(&name);
                let policy = StagePolicy {
                    concurrency: s.concurrency.max(1),
                    retry: RetryPolicy {
                        max_attempts: s.max_attempts.max(1),
                        backoff: Backoff { ..s.backoff },
                    },
                    visibility_timeout: s.visibility_timeout,
                    pickup_timeout: s.pickup_timeout,
                };
                (name, policy)
            })
            .collect();
        Catalog {
            tasks: config.tasks.clone(),
            stages,
        }
    }

    /// A task type.
    pub fn task(&self, name: &TaskTypeName) -> Option<&TaskConfig> {
        self.tasks.get(name)
    }

    /// Every task type.
    pub fn tasks(&self) -> impl Iterator<Item = (&TaskTypeName, &TaskConfig)> {
        self.tasks.iter()
    }

    /// A stage's policy (defaults for a stage no task uses).
    pub fn stage(&self, name: &StageName) -> StagePolicy {
        self.stages.get(name).cloned().unwrap_or_else(|| {
            let d = onramp_config::StageConfig::default();
            StagePolicy {
                concurrency: d.concurrency,
                retry: RetryPolicy {
                    max_attempts: d.max_attempts,
                    backoff: d.backoff,
                },
                visibility_timeout: d.visibility_timeout,
                pickup_timeout: d.pickup_timeout,
            }
        })
    }

    /// Every stage with its policy.
    pub fn stages(&self) -> impl Iterator<Item = (&StageName, &StagePolicy)> {
        self.stages.iter()
    }

    /// The steps for an ordered list of task type names; unknown names are returned as the
    /// error, and kinds this version cannot run as `Err(Ok(kind))`-style messages.
    pub fn steps_for(&self, tasks: &[TaskTypeName]) -> Result<Vec<NewStep>, StepsError> {
        let unknown: Vec<String> = tasks
            .iter()
            .filter(|t| !self.tasks.contains_key(*t))
            .map(|t| t.to_string())
            .collect();
        if !unknown.is_empty() {
            return Err(StepsError::Unknown(unknown));
        }
        let mut steps = Vec::with_capacity(tasks.len());
        for t in tasks {
            let config = &self.tasks[t];
            let kind = config.kind.name();
            if !SUPPORTED_KINDS.contains(&kind) {
                return Err(StepsError::Unsupported {
                    task: t.to_string(),
                    kind,
                });
            }
            steps.push(NewStep {
                task: t.clone(),
                stage: config.stage.clone(),
                kind: kind.to_owned(),
                compensable: matches!(&config.kind, TaskKind::Http(http) if http.compensate.is_some()),
            });
        }
        Ok(steps)
    }
}

impl Catalog {
    /// Where a task in `tasks` uses the output of a step that does not run before it
    /// (`{{steps.create_account.output.id}}` in a task listed before `create_account`):
    /// `(index, message)` for each.
    pub fn order_problems(&self, tasks: &[TaskTypeName]) -> Vec<(usize, String)> {
        let mut problems = Vec::new();
        for (i, name) in tasks.iter().enumerate() {
            if let Some(TaskKind::Http(http)) = self.tasks.get(name).map(|t| &t.kind) {
                for problem in references::check(name, http, &tasks[..i]) {
                    problems.push((i, format!("task `{name}`: {problem}")));
                }
            }
        }
        problems
    }
}

/// Why a task list cannot become steps.
#[derive(Debug, Clone, PartialEq)]
pub enum StepsError {
    /// Task types the config does not declare.
    Unknown(Vec<String>),
    /// A task kind this version cannot run yet.
    Unsupported {
        /// The task type.
        task: String,
        /// Its kind.
        kind: &'static str,
    },
}

/// Whether a kind is one the engine runs.
pub fn is_supported(kind: &TaskKind) -> bool {
    SUPPORTED_KINDS.contains(&kind.name())
}
