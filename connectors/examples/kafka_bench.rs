//! Helpers of benches/kafka.sh (not part of strata):
//!
//! - `produce BOOTSTRAP TOPIC N BYTES`: N JSON documents of about BYTES bytes, keyed by id,
//!   spread over the topic's partitions, with an idempotent producer; prints the rate.
//! - `consume BOOTSTRAP TOPIC N`: the baseline of the benchmark, a bare rdkafka consumer
//!   loop that polls the topic from the start and discards the messages until it has seen
//!   N, with the same fetch settings strata's source uses; prints `seconds records bytes`.
//! - `watermarks BOOTSTRAP TOPIC PARTITIONS`: the low and high offsets the broker reports.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: kafka_bench produce BOOTSTRAP TOPIC N BYTES | consume BOOTSTRAP TOPIC N | watermarks BOOTSTRAP TOPIC PARTITIONS";
    match args.get(1).map(String::as_str) {
        Some("produce") if args.len() == 6 => {
            let n: u64 = args[4].parse().expect("N");
            let bytes: usize = args[5].parse().expect("BYTES");
            produce(&args[2], &args[3], n, bytes);
        }
        Some("watermarks") if args.len() == 5 => {
            let partitions: i32 = args[4].parse().expect("PARTITIONS");
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &args[2])
                .create()
                .expect("consumer");
            let mut total = 0;
            for p in 0..partitions {
                let (low, high) = consumer
                    .fetch_watermarks(&args[3], p, Duration::from_secs(10))
                    .expect("watermarks");
                println!("partition {p}: low {low} high {high}");
                total += high - low;
            }
            println!("total {total}");
        }
        Some("consume") if args.len() == 5 => {
            let n: u64 = args[4].parse().expect("N");
            consume(&args[2], &args[3], n);
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}

fn produce(bootstrap: &str, topic: &str, n: u64, bytes: usize) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .expect("producer");
    let filler = "lorem ipsum dolor sit amet ".repeat(bytes / 27 + 1);
    let started = Instant::now();
    for id in 0..n {
        let value = format!(
            "{{\"id\":{id},\"tenant\":\"t{}\",\"body\":\"{}\"}}",
            id % 16,
            &filler[..bytes.saturating_sub(48)]
        );
        let key = id.to_string();
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "produced {n} messages in {secs:.1} s ({:.0}/s)",
        n as f64 / secs
    );
}

fn consume(bootstrap: &str, topic: &str, n: u64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bare-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .set("max.partition.fetch.bytes", "8388608")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let started = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    while records < n {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => eprintln!("consumer error: {e}"),
            None => {
                if started.elapsed() > Duration::from_secs(600) {
                    panic!("only {records} of {n} messages in 600 s");
                }
            }
        }
    }
    println!("{:.3} {records} {bytes}", started.elapsed().as_secs_f64());
}
