/*-------------------------------------------------------------------------
 * handler_api.c
 *	  Functions a SQL handler calls to steer its own failure: fail for good
 *	  (SQLSTATE TK001) or retry after a given delay (SQLSTATE TK002).
 *
 * The delay is kept in a backend-local variable rather than in the error,
 * so it survives the rollback of the handler's subtransaction.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "handler_api.h"

static int	backoff_request = -1;

void
TaskerResetBackoffRequest(void)
{
	backoff_request = -1;
}

int
TaskerBackoffRequest(void)
{
	return backoff_request;
}

PG_FUNCTION_INFO_V1(tasker_fail_permanently);

/*
 * tasker_fail_permanently is tasker.fail_permanently(message, detail):
 * raises TK001, which the executor records as a permanent error.
 */
Datum
tasker_fail_permanently(PG_FUNCTION_ARGS)
{
	char	   *message = PG_ARGISNULL(0) ? "step failed permanently" :
		text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (PG_ARGISNULL(1))
		ereport(ERROR, (errcode(TASKER_ERRCODE_PERMANENT_FAILURE), errmsg("%s", message)));
	ereport(ERROR,
			(errcode(TASKER_ERRCODE_PERMANENT_FAILURE), errmsg("%s", message),
			 errdetail("%s", text_to_cstring(PG_GETARG_TEXT_PP(1)))));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(tasker_retry_after);

/*
 * tasker_retry_after is tasker.retry_after(seconds, message): raises TK002
 * and asks for the next attempt in `seconds` (a retryable failure).
 */
Datum
tasker_retry_after(PG_FUNCTION_ARGS)
{
	int			seconds = PG_ARGISNULL(0) ? -1 : PG_GETARG_INT32(0);
	char	   *message = PG_ARGISNULL(1) ? "step asked to be retried" :
		text_to_cstring(PG_GETARG_TEXT_PP(1));

	if (seconds < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retry delay must be a non-negative number of seconds")));
	backoff_request = seconds;
	ereport(ERROR,
			(errcode(TASKER_ERRCODE_RETRY_AFTER), errmsg("%s", message),
			 errdetail("Retry requested in %d seconds.", seconds)));
	PG_RETURN_VOID();
}
