//! `tumble(ts, INTERVAL 'n' UNIT)` and `tumble_end(ts, INTERVAL 'n' UNIT)`: the start and the
//! end of the tumbling window a timestamp falls in.
//!
//! Owns the SQL surface of event-time windows. Both are plain scalar functions (usable
//! anywhere); `GROUP BY tumble(...)` over a streaming source is what the planner turns into
//! a window aggregate (windows emitted once, when the watermark passes their end; see
//! `strata_pipeline::window`). Windows are aligned to the Unix epoch in UTC, as in Flink and
//! Arroyo; the size must be a fixed duration (seconds to days; months and years vary in
//! length and are refused).

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, TimestampMicrosecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::scalar_doc_sections::DOC_SECTION_DATETIME;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// SQL name of the window-start function.
pub const TUMBLE: &str = "tumble";
/// SQL name of the window-end function.
pub const TUMBLE_END: &str = "tumble_end";

/// The length in microseconds of a fixed-duration interval literal; `None` for intervals
/// with months (their length varies), non-positive ones and non-intervals.
pub fn interval_micros(v: &ScalarValue) -> Option<i64> {
    let micros = match v {
        ScalarValue::IntervalDayTime(Some(d)) => {
            i64::from(d.days) * 86_400_000_000 + i64::from(d.milliseconds) * 1_000
        }
        ScalarValue::IntervalMonthDayNano(Some(m)) if m.months == 0 => {
            i64::from(m.days) * 86_400_000_000 + m.nanoseconds / 1_000
        }
        ScalarValue::DurationSecond(Some(s)) => s.checked_mul(1_000_000)?,
        ScalarValue::DurationMillisecond(Some(s)) => s.checked_mul(1_000)?,
        ScalarValue::DurationMicrosecond(Some(s)) => *s,
        ScalarValue::DurationNanosecond(Some(s)) => s / 1_000,
        _ => return None,
    };
    (micros > 0).then_some(micros)
}

/// Start of the window of `ts` (microseconds since the epoch) for windows of `size` µs.
pub fn window_start(ts: i64, size: i64) -> i64 {
    ts.div_euclid(size) * size
}

/// `tumble` (window start) or `tumble_end` (window end, exclusive).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TumbleFunc {
    end: bool,
    signature: Signature,
}

impl TumbleFunc {
    /// `tumble` when `end` is false, `tumble_end` when true.
    pub fn new(end: bool) -> Self {
        Self {
            end,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    fn sql_name(&self) -> &'static str {
        if self.end {
            TUMBLE_END
        } else {
            TUMBLE
        }
    }
}

/// Timestamps of any unit become microseconds, keeping the time zone.
fn micros_type(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Timestamp(_, tz) => Some(DataType::Timestamp(TimeUnit::Microsecond, tz.clone())),
        DataType::Null => Some(DataType::Timestamp(TimeUnit::Microsecond, None)),
        _ => None,
    }
}

impl ScalarUDFImpl for TumbleFunc {
    fn name(&self) -> &str {
        self.sql_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.sql_name();
        let [ts, size] = arg_types else {
            return plan_err!(
                "{name} takes 2 arguments: {name}(ts, INTERVAL '1' HOUR), got {}",
                arg_types.len()
            );
        };
        let Some(ts) = micros_type(ts) else {
            return plan_err!(
                "{name}: ts must be a TIMESTAMP, got {ts}; CAST it, or declare the column as TIMESTAMP"
            );
        };
        if !matches!(size, DataType::Interval(_) | DataType::Duration(_)) {
            return plan_err!(
                "{name}: the window size must be an INTERVAL like INTERVAL '1' HOUR, got {size}"
            );
        }
        Ok(vec![ts, size.clone()])
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first().and_then(micros_type) {
            Some(t) => Ok(t),
            None => plan_err!("{}: ts must be a TIMESTAMP", self.sql_name()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.sql_name();
        let size = match args.args.get(1) {
            Some(ColumnarValue::Scalar(v)) => match interval_micros(v) {
                Some(m) => m,
                None => {
                    return exec_err!(
                        "{name}: the window size must be a positive fixed interval (seconds to \
                         days; months and years vary in length), got {v}"
                    )
                }
            },
            _ => return exec_err!("{name}: the window size must be a literal INTERVAL"),
        };
        let out_type = args.return_field.data_type().clone();
        let (array, scalar): (ArrayRef, bool) = match &args.args[0] {
            ColumnarValue::Array(a) => (Arc::clone(a), false),
            ColumnarValue::Scalar(s) => (s.to_array_of_size(1)?, true),
        };
        let micros = cast(&array, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
        let micros = micros
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("cast to Timestamp(µs)");
        let shift = if self.end { size } else { 0 };
        let out: TimestampMicrosecondArray = micros
            .iter()
            .map(|t| t.map(|t| window_start(t, size) + shift))
            .collect();
        let out: ArrayRef = cast(&out, &out_type)?;
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        static START: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                DOC_SECTION_DATETIME,
                "Start of the tumbling window that ts falls in. GROUP BY tumble(...) over a \
                 streaming source is a window aggregate, emitted once per window when the \
                 watermark passes its end.",
                "tumble(ts, size)",
            )
            .with_sql_example(
                "SELECT tumble(ts, INTERVAL '1' HOUR) AS hour, model, SUM(cost_usd) FROM usage \
                 GROUP BY tumble(ts, INTERVAL '1' HOUR), model",
            )
            .with_argument("ts", "Event time (TIMESTAMP).")
            .with_argument("size", "Window length: a fixed INTERVAL (seconds to days).")
            .build()
        });
        static END: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                DOC_SECTION_DATETIME,
                "End (exclusive) of the tumbling window that ts falls in.",
                "tumble_end(ts, size)",
            )
            .with_sql_example("SELECT tumble_end(ts, INTERVAL '5' MINUTE) FROM usage")
            .with_argument("ts", "Event time (TIMESTAMP).")
            .with_argument("size", "Window length: a fixed INTERVAL (seconds to days).")
            .build()
        });
        Some(if self.end { &END } else { &START })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::IntervalMonthDayNano;

    #[test]
    fn windows_align_to_the_epoch_including_before_it() {
        let hour = 3_600_000_000;
        assert_eq!(window_start(0, hour), 0);
        assert_eq!(window_start(hour - 1, hour), 0);
        assert_eq!(window_start(hour, hour), hour);
        assert_eq!(window_start(-1, hour), -hour);
    }

    #[test]
    fn only_fixed_positive_intervals_are_window_sizes() {
        let mdn = |months, days, nanos| {
            ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(months, days, nanos)))
        };
        assert_eq!(
            interval_micros(&mdn(0, 0, 3_600_000_000_000)),
            Some(3_600_000_000)
        );
        assert_eq!(interval_micros(&mdn(0, 1, 0)), Some(86_400_000_000));
        assert_eq!(interval_micros(&mdn(1, 0, 0)), None);
        assert_eq!(interval_micros(&mdn(0, 0, 0)), None);
        assert_eq!(interval_micros(&ScalarValue::Int64(Some(5))), None);
    }
}
