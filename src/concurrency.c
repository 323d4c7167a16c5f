/*-------------------------------------------------------------------------
 * concurrency.c
 *	  Dynamic concurrency, the Rails engine's formula on PostgreSQL's own
 *	  gauges:
 *
 *	    clamp(min(slot_term, load_term), min_concurrent_steps, max_concurrent_steps)
 *
 *	  slot_term: free connection slots and free background-worker slots,
 *	  each scaled by the factor of its pressure level (used / total: low
 *	  <= 0.5 -> 0.8, moderate <= 0.7 -> 0.6, high <= 0.85 -> 0.4, critical
 *	  -> 0.2); the smaller of the two.
 *	  load_term: combined load = 0.3 * task load + 0.7 * step load; <= 0.3
 *	  -> max, <= 0.6 -> 60% of the way from min to max, else min + 1.
 *
 *	  The figure is cached for tasker.concurrency_cache_duration.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "spi_util.h"
#include "tasker.h"
#include "workers.h"

static TaskerConcurrencyInputs cached_inputs;
static TaskerConcurrency cached_result;
static TimestampTz cached_at = 0;

static double
PressureFactor(double pressure, const char **level)
{
	if (pressure <= 0.5)
	{
		*level = "low";
		return 0.8;
	}
	if (pressure <= 0.7)
	{
		*level = "moderate";
		return 0.6;
	}
	if (pressure <= 0.85)
	{
		*level = "high";
		return 0.4;
	}
	*level = "critical";
	return 0.2;
}

static int
LevelRank(const char *level)
{
	if (strcmp(level, "low") == 0)
		return 0;
	if (strcmp(level, "moderate") == 0)
		return 1;
	if (strcmp(level, "high") == 0)
		return 2;
	return 3;
}

/*
 * TaskerComputeConcurrency applies the formula to its inputs.
 */
TaskerConcurrency
TaskerComputeConcurrency(const TaskerConcurrencyInputs *in)
{
	TaskerConcurrency out;
	const char *conn_level;
	const char *worker_level;
	double		conn_factor;
	double		worker_factor;
	int			conn_term;
	int			worker_term;
	int			lo = in->min_concurrency;
	int			hi = Max(in->max_concurrency, lo);

	out.connection_pressure = in->max_connections > 0 ?
		(double) in->active_connections / in->max_connections : 1.0;
	out.worker_pressure = in->max_workers > 0 ?
		(double) in->busy_workers / in->max_workers : 1.0;
	conn_factor = PressureFactor(out.connection_pressure, &conn_level);
	worker_factor = PressureFactor(out.worker_pressure, &worker_level);
	conn_term = (int) floor(Max(in->max_connections - in->active_connections, 0) * conn_factor);
	worker_term = (int) floor(Max(in->max_workers - in->busy_workers, 0) * worker_factor);
	out.slot_term = Min(conn_term, worker_term);
	out.pressure_level = LevelRank(conn_level) >= LevelRank(worker_level) ?
		conn_level : worker_level;

	out.combined_load = 0.3 * in->task_load + 0.7 * in->step_load;
	if (out.combined_load <= 0.3)
		out.load_term = hi;
	else if (out.combined_load <= 0.6)
		out.load_term = lo + (int) rint(0.6 * (hi - lo));
	else
		out.load_term = lo + 1;

	out.concurrency = Min(out.slot_term, out.load_term);
	if (out.concurrency < lo)
		out.concurrency = lo;
	if (out.concurrency > hi)
		out.concurrency = hi;
	return out;
}

/*
 * ReadInputs asks tasker._concurrency_inputs() for the gauges (inside a
 * transaction).
 */
static void
ReadInputs(TaskerConcurrencyInputs *in)
{
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	SPI_connect();
	TaskerSpiExec("SELECT active_connections, max_connections, busy_workers, max_workers,"
				  " task_load, step_load FROM tasker._concurrency_inputs()",
				  0, NULL, NULL, NULL, SPI_OK_SELECT);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	in->active_connections = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	in->max_connections = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
	in->busy_workers = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
	in->max_workers = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
	in->task_load = DatumGetFloat8(SPI_getbinval(tup, desc, 5, &isnull));
	in->step_load = DatumGetFloat8(SPI_getbinval(tup, desc, 6, &isnull));
	SPI_finish();
	in->min_concurrency = tasker_min_concurrent_steps;
	in->max_concurrency = tasker_max_concurrent_steps;
}

static void
Refresh(bool force)
{
	TimestampTz now = GetCurrentTimestamp();

	if (!force && cached_at != 0 &&
		now < TimestampTzPlusMilliseconds(cached_at, tasker_concurrency_cache_duration * 1000L))
		return;
	ReadInputs(&cached_inputs);
	cached_result = TaskerComputeConcurrency(&cached_inputs);
	cached_at = now;
}

/*
 * TaskerCurrentConcurrency returns the (cached) figure; inside a transaction.
 */
int
TaskerCurrentConcurrency(void)
{
	Refresh(false);
	return cached_result.concurrency;
}

static Datum
ResultRecord(FunctionCallInfo fcinfo, const TaskerConcurrencyInputs *in,
			 const TaskerConcurrency *out, TimestampTz computed_at)
{
	TupleDesc	desc;
	Datum		values[16];
	bool		nulls[16] = {0};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	desc = BlessTupleDesc(desc);
	values[0] = Int32GetDatum(out->concurrency);
	values[1] = Int32GetDatum(out->slot_term);
	values[2] = Int32GetDatum(out->load_term);
	values[3] = CStringGetTextDatum(out->pressure_level);
	values[4] = Float8GetDatum(out->connection_pressure);
	values[5] = Float8GetDatum(out->worker_pressure);
	values[6] = Int32GetDatum(in->active_connections);
	values[7] = Int32GetDatum(in->max_connections);
	values[8] = Int32GetDatum(in->busy_workers);
	values[9] = Int32GetDatum(in->max_workers);
	values[10] = Float8GetDatum(in->task_load);
	values[11] = Float8GetDatum(in->step_load);
	values[12] = Float8GetDatum(out->combined_load);
	values[13] = Int32GetDatum(in->min_concurrency);
	values[14] = Int32GetDatum(in->max_concurrency);
	values[15] = TimestampTzGetDatum(computed_at);
	nulls[15] = computed_at == 0;
	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

PG_FUNCTION_INFO_V1(tasker_concurrency);

/*
 * tasker_concurrency is tasker.concurrency(refresh): the figure the
 * dispatcher uses and every input to it.
 */
Datum
tasker_concurrency(PG_FUNCTION_ARGS)
{
	Refresh(PG_ARGISNULL(0) ? false : PG_GETARG_BOOL(0));
	PG_RETURN_DATUM(ResultRecord(fcinfo, &cached_inputs, &cached_result, cached_at));
}

PG_FUNCTION_INFO_V1(tasker_concurrency_formula);

/*
 * tasker_concurrency_formula applies the formula to given inputs (for
 * tests and what-if questions).
 */
Datum
tasker_concurrency_formula(PG_FUNCTION_ARGS)
{
	TaskerConcurrencyInputs in;
	TaskerConcurrency out;
	int			i;

	for (i = 0; i < 8; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("concurrency_formula arguments must not be null")));
	in.active_connections = PG_GETARG_INT32(0);
	in.max_connections = PG_GETARG_INT32(1);
	in.busy_workers = PG_GETARG_INT32(2);
	in.max_workers = PG_GETARG_INT32(3);
	in.task_load = PG_GETARG_FLOAT8(4);
	in.step_load = PG_GETARG_FLOAT8(5);
	in.min_concurrency = PG_GETARG_INT32(6);
	in.max_concurrency = PG_GETARG_INT32(7);
	if (in.active_connections < 0 || in.max_connections < 0 || in.busy_workers < 0 ||
		in.max_workers < 0 || in.min_concurrency < 1 || in.max_concurrency < in.min_concurrency)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("concurrency_formula inputs out of range"),
				 errdetail("Counts must be non-negative and 1 <= min <= max.")));
	out = TaskerComputeConcurrency(&in);
	PG_RETURN_DATUM(ResultRecord(fcinfo, &in, &out, 0));
}
