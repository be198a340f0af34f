//! The local accelerator batch executor: one per process, serving every local-model call.
//!
//! Owns the path from "a UDF has texts" to "a model ran on a well-filled batch":
//!
//! - a **bounded queue** of jobs (one job = the non-null texts of one Arrow array). When it is
//!   full, [`Executor::submit`] waits, so the query, and through it the source, slows down
//!   instead of memory growing;
//! - a **batcher** on its own thread that takes the first waiting job, then keeps taking jobs
//!   for up to `max_wait` or until `max_batch` texts are waiting;
//! - **bucketing**: the texts of a round are tokenized, sorted by token length and cut into
//!   batches of `max_batch`, so each batch pads to a similar length;
//! - **compute** on a dedicated rayon pool (`threads`, default all cores), never on tokio's
//!   workers. candle's matrix products split across that pool; a CUDA model runs its forward
//!   pass on the GPU while tokenization stays on the pool.
//!
//! Metrics: `strata_executor_queue_depth`, `strata_executor_queue_seconds`,
//! `strata_executor_batch_size`, `strata_executor_batch_fill_ratio` (real tokens / padded
//! tokens), `strata_executor_tokens_total`, `strata_executor_tokenize_seconds`,
//! `strata_executor_forward_seconds`.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use tokio::sync::{mpsc, oneshot};

use crate::error::{OperatorError, Result};

/// Jobs that may wait in the queue. Each holds at most one Arrow array's texts, so this bounds
/// the executor's memory at a few batches' worth of input.
pub const QUEUE_CAPACITY: usize = 16;

/// A model the executor can run: tokenize one text, run a forward pass over a batch.
pub trait BatchModel: Send + Sync {
    /// The model's id (for metrics and errors).
    fn id(&self) -> &str;
    /// Length of each output vector.
    fn dimensions(&self) -> usize;
    /// Token ids of `text`, special tokens included, truncated as the model requires.
    fn tokenize(&self, text: &str) -> Result<Vec<u32>>;
    /// Forward pass over `seqs` (of similar lengths): `seqs.len() * dimensions()` values.
    fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<f32>>;
}

/// How a model's calls are batched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Most texts per forward pass.
    pub max_batch: usize,
    /// Longest a text waits for others to fill its batch.
    pub max_wait: Duration,
}

struct Job {
    model: Arc<dyn BatchModel>,
    policy: BatchPolicy,
    texts: Vec<String>,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Vec<f32>>>,
}

/// The executor: a queue in front of a batcher thread and a rayon pool.
pub struct Executor {
    tx: mpsc::Sender<Job>,
    threads: usize,
    /// The compute pool, shared with the batcher thread.
    pool: Arc<rayon::ThreadPool>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("threads", &self.threads)
            .finish()
    }
}

impl Executor {
    /// The process-wide executor, started on first use with `threads` compute threads
    /// (default: every core). Asking again with a different explicit count is an error: one
    /// pool serves every local model of the process.
    pub fn global(threads: Option<usize>) -> std::result::Result<Arc<Executor>, String> {
        static GLOBAL: OnceLock<Mutex<Option<Arc<Executor>>>> = OnceLock::new();
        let cell = GLOBAL.get_or_init(Default::default);
        let mut g = cell.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = g.as_ref() {
            return match threads {
                Some(n) if n != e.threads => Err(format!(
                    "the local executor already runs with {} threads; every local model of a \
                     process shares it, so give all of them the same 'threads' (or none)",
                    e.threads
                )),
                _ => Ok(Arc::clone(e)),
            };
        }
        let n = threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        keep_tensor_buffers_in_the_heap();
        let e = Executor::start(n, QUEUE_CAPACITY).map_err(|e| e.to_string())?;
        *g = Some(Arc::clone(&e));
        Ok(e)
    }

    /// Start an executor with its own batcher thread and a rayon pool of `threads`.
    pub fn start(threads: usize, queue_capacity: usize) -> std::io::Result<Arc<Executor>> {
        let (tx, rx) = mpsc::channel(queue_capacity.max(1));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("strata-exec-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        let pool = Arc::new(pool);
        let batcher_pool = Arc::clone(&pool);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        std::thread::Builder::new()
            .name("strata-batcher".into())
            .spawn(move || rt.block_on(batcher(rx, batcher_pool)))?;
        Ok(Arc::new(Executor { tx, threads, pool }))
    }

    /// Compute threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `work` on the compute pool, detached, for model work that does not fit the
    /// batch-of-texts shape of [`Executor::submit`] (token-by-token generation runs its decode
    /// loop here). rayon operations inside `work` split across the same pool; the caller
    /// learns of the result through its own channel.
    pub fn spawn(&self, work: impl FnOnce() + Send + 'static) {
        self.pool.spawn(work);
    }

    /// Run `model` over `texts`: `texts.len() * dimensions()` values in input order. Waits
    /// while the queue is full.
    pub async fn submit(
        &self,
        model: Arc<dyn BatchModel>,
        policy: BatchPolicy,
        texts: Vec<String>,
    ) -> Result<Vec<f32>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let id = model.id().to_string();
        let (reply, rx) = oneshot::channel();
        let job = Job {
            model,
            policy,
            texts,
            enqueued: Instant::now(),
            reply,
        };
        metrics::gauge!("strata_executor_queue_depth").increment(1.0);
        if self.tx.send(job).await.is_err() {
            metrics::gauge!("strata_executor_queue_depth").decrement(1.0);
            return Err(stopped(&id));
        }
        rx.await.map_err(|_| stopped(&id))?
    }
}

/// A BERT forward pass allocates and frees tensors of tens of megabytes per layer. With
/// glibc's defaults every one of them is a fresh `mmap` (above the mmap threshold, or too
/// big for a thread arena's 64 MiB heap), so each pass page-faults its buffers in again:
/// a profile of the executor showed ~20% of CPU time in the kernel's page-fault path.
/// One arena, and no mmap or trimming below 1 GiB, lets freed buffers be reused; measured
/// 1.3x more texts/s on the embedding benchmark (benches/compare/embed.sh). Called
/// once, when the first local model starts the executor; it applies to the whole process
/// (small allocations of other threads then share one arena, which costs little next to
/// the forward passes such a process runs).
fn keep_tensor_buffers_in_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const ONE_GIB: libc::c_int = 1 << 30;
        // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
            libc::mallopt(libc::M_MMAP_THRESHOLD, ONE_GIB);
            libc::mallopt(libc::M_TRIM_THRESHOLD, ONE_GIB);
        }
    }
}

fn stopped(model: &str) -> OperatorError {
    OperatorError::Call {
        model: model.to_string(),
        message: "the local executor stopped (a forward pass panicked); see the log above".into(),
    }
}

async fn batcher(mut rx: mpsc::Receiver<Job>, pool: Arc<rayon::ThreadPool>) {
    while let Some(first) = rx.recv().await {
        metrics::gauge!("strata_executor_queue_depth").decrement(1.0);
        let deadline = tokio::time::Instant::now() + first.policy.max_wait;
        let max_batch = first.policy.max_batch;
        let mut waiting = first.texts.len();
        let mut jobs = vec![first];
        while waiting < max_batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) => {
                    metrics::gauge!("strata_executor_queue_depth").decrement(1.0);
                    waiting += job.texts.len();
                    jobs.push(job);
                }
                _ => break,
            }
        }
        pool.install(|| run_round(jobs));
    }
}

/// One round: the jobs taken together, grouped by model, bucketed by length.
fn run_round(jobs: Vec<Job>) {
    let _span = tracing::debug_span!("executor.round", jobs = jobs.len()).entered();
    let mut groups: Vec<Vec<Job>> = Vec::new();
    for job in jobs {
        metrics::histogram!("strata_executor_queue_seconds")
            .record(job.enqueued.elapsed().as_secs_f64());
        match groups
            .iter_mut()
            .find(|g| Arc::ptr_eq(&g[0].model, &job.model))
        {
            Some(g) => g.push(job),
            None => groups.push(vec![job]),
        }
    }
    for group in groups {
        run_group(group);
    }
}

fn run_group(jobs: Vec<Job>) {
    let model = Arc::clone(&jobs[0].model);
    let policy = jobs[0].policy;
    let dims = model.dimensions();
    let labels = [("model", model.id().to_string())];

    // Tokenize every text of the round in parallel; remember where each came from.
    let t0 = Instant::now();
    let refs: Vec<(usize, usize, &str)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(j, job)| {
            job.texts
                .iter()
                .enumerate()
                .map(move |(i, t)| (j, i, t.as_str()))
        })
        .collect();
    let tokenized: Vec<(usize, usize, Result<Vec<u32>>)> = refs
        .par_iter()
        .map(|&(j, i, t)| (j, i, model.tokenize(t)))
        .collect();
    metrics::histogram!("strata_executor_tokenize_seconds", &labels)
        .record(t0.elapsed().as_secs_f64());

    let mut outputs: Vec<Result<Vec<f32>>> = jobs
        .iter()
        .map(|j| Ok(vec![0f32; j.texts.len() * dims]))
        .collect();
    let mut seqs: Vec<(usize, usize, Vec<u32>)> = Vec::with_capacity(tokenized.len());
    for (j, i, r) in tokenized {
        match r {
            Ok(ids) => seqs.push((j, i, ids)),
            Err(e) => outputs[j] = Err(e),
        }
    }
    // Bucketing: sorted by length, consecutive texts pad to nearly the same length.
    seqs.retain(|(j, _, _)| outputs[*j].is_ok());
    seqs.sort_by_key(|(_, _, ids)| ids.len());

    // The batches of a round run in parallel on the pool (each forward pass also splits
    // its matrix products across the pool). Running whole batches side by side keeps every
    // core busy through the parts of a BERT pass that candle runs on one thread
    // (elementwise GELU, masking, pooling), which otherwise idle the other cores.
    let batches: Vec<&[(usize, usize, Vec<u32>)]> = seqs.chunks(policy.max_batch.max(1)).collect();
    let results: Vec<Result<Vec<f32>>> = batches
        .par_iter()
        .map(|batch| {
            let ids: Vec<&[u32]> = batch.iter().map(|(_, _, s)| s.as_slice()).collect();
            let real: usize = ids.iter().map(|s| s.len()).sum();
            let padded = ids.iter().map(|s| s.len()).max().unwrap_or(0) * ids.len();
            metrics::histogram!("strata_executor_batch_size", &labels).record(ids.len() as f64);
            if padded > 0 {
                metrics::histogram!("strata_executor_batch_fill_ratio", &labels)
                    .record(real as f64 / padded as f64);
            }
            let t = Instant::now();
            let result = {
                let _span =
                    tracing::debug_span!("executor.forward", batch = ids.len(), tokens = real)
                        .entered();
                model.forward(&ids)
            };
            metrics::histogram!("strata_executor_forward_seconds", &labels)
                .record(t.elapsed().as_secs_f64());
            metrics::counter!("strata_executor_tokens_total", &labels).increment(real as u64);
            result
        })
        .collect();
    for (batch, result) in batches.into_iter().zip(results) {
        match result {
            Ok(vectors) if vectors.len() == batch.len() * dims => {
                for ((j, i, _), v) in batch.iter().zip(vectors.chunks(dims)) {
                    if let Ok(out) = &mut outputs[*j] {
                        out[i * dims..(i + 1) * dims].copy_from_slice(v);
                    }
                }
            }
            Ok(vectors) => {
                let msg = format!(
                    "forward pass returned {} values for {} texts of {dims} dimensions",
                    vectors.len(),
                    batch.len()
                );
                for (j, _, _) in batch {
                    outputs[*j] = Err(OperatorError::Call {
                        model: model.id().to_string(),
                        message: msg.clone(),
                    });
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for (j, _, _) in batch {
                    outputs[*j] = Err(OperatorError::Call {
                        model: model.id().to_string(),
                        message: msg.clone(),
                    });
                }
            }
        }
    }
    for (job, out) in jobs.into_iter().zip(outputs) {
        // The caller may have gone (its query was cancelled): nothing to deliver then.
        let _ = job.reply.send(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A model whose vector for a text is [len, first byte, 0, ...] and that records the
    /// batch sizes it saw.
    struct Probe {
        batches: Mutex<Vec<usize>>,
        calls: AtomicUsize,
    }

    impl BatchModel for Probe {
        fn id(&self) -> &str {
            "probe"
        }
        fn dimensions(&self) -> usize {
            3
        }
        fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
            if text == "bad" {
                return Err(OperatorError::InvalidArgument {
                    function: "probe",
                    message: "bad text".into(),
                });
            }
            Ok(text.bytes().map(u32::from).collect())
        }
        fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<f32>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.batches.lock().unwrap().push(seqs.len());
            Ok(seqs
                .iter()
                .flat_map(|s| [s.len() as f32, s.first().copied().unwrap_or(0) as f32, 0.0])
                .collect())
        }
    }

    fn probe() -> Arc<Probe> {
        Arc::new(Probe {
            batches: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
        })
    }

    #[tokio::test]
    async fn test_results_in_input_order_across_buckets() {
        let ex = Executor::start(2, 4).unwrap();
        let m = probe();
        let texts: Vec<String> = (0..37).map(|i| "x".repeat((i * 7) % 23 + 1)).collect();
        let policy = BatchPolicy {
            max_batch: 5,
            max_wait: Duration::from_millis(1),
        };
        let out = ex.submit(m.clone(), policy, texts.clone()).await.unwrap();
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(out[i * 3], t.len() as f32, "text {i}");
        }
        let batches = m.batches.lock().unwrap().clone();
        assert!(batches.iter().all(|&b| b <= 5), "{batches:?}");
        assert_eq!(batches.iter().sum::<usize>(), 37);
    }

    #[tokio::test]
    async fn test_jobs_from_many_callers_share_batches() {
        let ex = Executor::start(2, 64).unwrap();
        let m = probe();
        let policy = BatchPolicy {
            max_batch: 64,
            max_wait: Duration::from_millis(200),
        };
        let calls: Vec<_> = (0..16)
            .map(|i| {
                let ex = Arc::clone(&ex);
                let m: Arc<dyn BatchModel> = m.clone();
                tokio::spawn(async move {
                    let texts = vec![format!("{i}a"), format!("{i}bb")];
                    ex.submit(m, policy, texts).await
                })
            })
            .collect();
        for c in calls {
            let v = c.await.unwrap().unwrap();
            assert_eq!(v.len(), 6);
        }
        // 32 texts arrive within the wait window: far fewer forward passes than callers.
        assert!(m.calls.load(Ordering::SeqCst) < 16);
    }

    #[tokio::test]
    async fn test_a_bad_text_fails_only_its_job() {
        let ex = Executor::start(1, 4).unwrap();
        let m = probe();
        let policy = BatchPolicy {
            max_batch: 8,
            max_wait: Duration::from_millis(50),
        };
        let (a, b) = tokio::join!(
            ex.submit(m.clone(), policy, vec!["ok".into(), "bad".into()]),
            ex.submit(m.clone(), policy, vec!["fine".into()]),
        );
        assert!(a.is_err());
        assert_eq!(b.unwrap(), vec![4.0, b'f' as f32, 0.0]);
    }

    #[tokio::test]
    async fn test_empty_submit_makes_no_call() {
        let ex = Executor::start(1, 1).unwrap();
        let m = probe();
        let policy = BatchPolicy {
            max_batch: 8,
            max_wait: Duration::ZERO,
        };
        assert!(ex
            .submit(m.clone(), policy, vec![])
            .await
            .unwrap()
            .is_empty());
        assert_eq!(m.calls.load(Ordering::SeqCst), 0);
    }
}
