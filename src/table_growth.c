/*-------------------------------------------------------------------------
 * table_growth.c
 *	  The dispatcher analyzes tasker's tables when workflow_steps holds
 *	  far more rows than its statistics say.
 *
 * PostgreSQL replans a cached statement when ANALYZE changes the statistics
 * of its tables, not as the tables grow.  Every worker and client session
 * that planned the claim while the statistics described an empty or tiny
 * workflow_steps (a new database; after retention or a DELETE emptied it and
 * anyone, autovacuum included, analyzed it so) keeps plans in which reading
 * a whole index is the cheapest way to find one row, and runs them at every
 * claim until autovacuum next analyzes the table (autovacuum_naptime, a
 * minute by default, and only past its thresholds): the executors of a new
 * database ran the first minute of a DAG load at half speed.  An ANALYZE
 * here gives the planner the table as it is and, when it commits, makes
 * every session replan.
 *
 * The test compares the live rows the cumulative statistics count (inserts
 * and deletes, as they commit) with pg_class.reltuples, the count the
 * planner was last given — by whoever analyzed or vacuumed last — so it
 * holds however the table got there: grown, or refilled in place.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/backend_status.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "spi_util.h"
#include "workers.h"

/* fewer live rows than this past the statistics are ignored: plans for a few pages are fine */
#define GROWTH_MIN_ROWS 1000

/*
 * Not before this, the next analysis: one that did not bring the statistics
 * up to the live count (ANALYZE skipped workflow_steps while autovacuum
 * held it, with a WARNING) is tried again after a second, then after twice
 * as long each time, up to a minute; the delay starts again at a second
 * once the statistics have caught up.  Each analysis makes every session
 * replan: a storm of them would cost more than the plans they fix.
 */
static TimestampTz next_analysis_not_before = 0;
#define RETRY_DELAY_MS 1000
#define MAX_RETRY_DELAY_MS 60000
static int	retry_delay_ms = RETRY_DELAY_MS;

/*
 * TaskerStepsOutgrewStatistics says, inside a transaction, whether
 * workflow_steps has more than twice the live rows (plus GROWTH_MIN_ROWS)
 * its statistics count.  A table that was never analyzed counts as empty.
 */
bool
TaskerStepsOutgrewStatistics(void)
{
	Oid			namespace = get_namespace_oid("tasker", true);
	Oid			relid = OidIsValid(namespace) ?
		get_relname_relid("workflow_steps", namespace) : InvalidOid;
	Relation	rel;
	double		analyzed_rows;
	PgStat_StatTabEntry *counts;

	if (!OidIsValid(relid) || GetCurrentTimestamp() < next_analysis_not_before)
		return false;
	rel = relation_open(relid, AccessShareLock);
	analyzed_rows = Max(rel->rd_rel->reltuples, 0);
	relation_close(rel, AccessShareLock);
	counts = pgstat_fetch_stat_tabentry(relid);
	if (counts == NULL)
		return false;
	if (counts->n_live_tuples <= 2 * analyzed_rows + GROWTH_MIN_ROWS)
	{
		retry_delay_ms = RETRY_DELAY_MS;	/* caught up */
		return false;
	}
	ereport(DEBUG1,
			(errmsg("tasker dispatcher: workflow_steps has %lld live rows, its statistics %.0f; analyzing",
					(long long) counts->n_live_tuples, analyzed_rows)));
	return true;
}

/*
 * TaskerAnalyzeTables analyzes the tables the claim and the completion
 * plan on, in a transaction of its own (outside any, on entry).  SKIP_LOCKED:
 * a table that autovacuum is working on is being analyzed anyway.
 */
void
TaskerAnalyzeTables(void)
{
	MemoryContext context = CurrentMemoryContext;
	volatile bool failed = false;

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "tasker dispatcher: analyzing");
		if (TaskerExtensionInstalled())
			TaskerSpiExec("ANALYZE (SKIP_LOCKED) tasker.workflow_steps, tasker.tasks, tasker.workflow_step_edges",
						  0, NULL, NULL, NULL, SPI_OK_UTILITY);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		/*
		 * The analysis only helps the planner: one that fails (a
		 * statement_timeout set on the database, say) is reported and tried
		 * again a minute later, and the dispatcher goes on.
		 */
		ErrorData  *edata;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(WARNING,
				(errmsg("tasker dispatcher could not analyze tasker's tables: %s", edata->message)));
		FreeErrorData(edata);
		failed = true;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(context);
	pgstat_report_activity(STATE_IDLE, NULL);
	if (failed)
		retry_delay_ms = MAX_RETRY_DELAY_MS;
	next_analysis_not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), retry_delay_ms);
	retry_delay_ms = Min(retry_delay_ms * 2, MAX_RETRY_DELAY_MS);
}
