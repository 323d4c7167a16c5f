/*-------------------------------------------------------------------------
 * backoff.c
 *	  The retry delay of DESIGN §4: an explicit request wins; otherwise
 *	  min(base * multiplier ^ attempts, max_backoff) with jitter.
 *
 * The delay is computed once, when the failure is recorded, and stored as
 * next_attempt_at, so the diagnostic and the claim path read the same value.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/pg_prng.h"
#include "fmgr.h"

#include "tasker.h"

/*
 * TaskerBackoffSeconds returns the delay before the next attempt of a step
 * that has made `attempts` attempts.  requested < 0 means no request.
 */
static double
TaskerBackoffSeconds(int attempts, double requested)
{
	double		delay;

	if (requested >= 0)
		return requested;

	delay = tasker_backoff_base * pow(tasker_backoff_multiplier, Max(attempts, 0));
	if (isnan(delay) || delay > tasker_max_backoff)
		delay = tasker_max_backoff;
	if (tasker_backoff_jitter > 0)
		delay *= 1.0 + tasker_backoff_jitter * (2.0 * pg_prng_double(&pg_global_prng_state) - 1.0);
	if (delay > tasker_max_backoff)
		delay = tasker_max_backoff;
	if (delay < 0)
		delay = 0;
	return delay;
}

PG_FUNCTION_INFO_V1(tasker_backoff_seconds);

/*
 * tasker_backoff_seconds is tasker.backoff_seconds(attempts, requested).
 */
Datum
tasker_backoff_seconds(PG_FUNCTION_ARGS)
{
	int			attempts = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT32(0);
	double		requested = PG_ARGISNULL(1) ? -1 : PG_GETARG_FLOAT8(1);

	if (!PG_ARGISNULL(1) && requested < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("backoff request must not be negative: %g", requested)));
	PG_RETURN_FLOAT8(TaskerBackoffSeconds(attempts, requested));
}
