/*-------------------------------------------------------------------------
 * table_growth.c
 *	  The dispatcher analyzes tasker's tables when workflow_steps has
 *	  outgrown the size of their last analysis.
 *
 * PostgreSQL replans a cached statement when ANALYZE changes the statistics
 * of its tables, not as the tables grow.  Every worker and client session
 * that planned the claim while workflow_steps was empty or had no statistics
 * (a new database; after a DELETE and VACUUM; after retention emptied it)
 * keeps plans in which reading a whole index is the cheapest way to find one
 * row, and runs them at every claim until autovacuum next analyzes the table
 * (autovacuum_naptime, a minute by default, and only past its thresholds):
 * the executors of a new database ran the first minute of a DAG load at half
 * speed.  An ANALYZE here gives the planner the table as it is and, when it
 * commits, makes every session replan.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "storage/bufmgr.h"
#include "utils/backend_status.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "spi_util.h"
#include "workers.h"

/* growth below this is ignored: plans for a few pages are fine */
#define GROWTH_MIN_BLOCKS 16

/* workflow_steps' size at the last analysis, or when first looked at */
static BlockNumber analyzed_blocks = InvalidBlockNumber;

/*
 * An analysis that found no committed row (the rows that grew the table were
 * still being inserted) leaves the mark where it was, to be tried again, but
 * not before this: a long bulk load must not be sampled at every round.
 */
static TimestampTz retry_not_before = 0;
#define RETRY_DELAY_MS 1000
/* after an analysis that failed */
#define FAILED_RETRY_DELAY_MS 60000

/*
 * TaskerStepsOutgrewAnalysis says, inside a transaction, whether
 * workflow_steps has more than doubled (plus GROWTH_MIN_BLOCKS) since the
 * last analysis.  A table that shrank lowers the mark: plans made since are
 * made for the smaller size (VACUUM's truncation invalidates the old ones).
 */
bool
TaskerStepsOutgrewAnalysis(BlockNumber *blocks)
{
	Oid			namespace = get_namespace_oid("tasker", true);
	Oid			relid = OidIsValid(namespace) ?
		get_relname_relid("workflow_steps", namespace) : InvalidOid;
	Relation	rel;

	if (!OidIsValid(relid))
		return false;
	rel = relation_open(relid, AccessShareLock);
	*blocks = RelationGetNumberOfBlocks(rel);
	relation_close(rel, AccessShareLock);

	if (analyzed_blocks == InvalidBlockNumber || *blocks < analyzed_blocks)
		analyzed_blocks = *blocks;
	return *blocks > 2 * analyzed_blocks + GROWTH_MIN_BLOCKS &&
		GetCurrentTimestamp() >= retry_not_before;
}

/*
 * TaskerAnalyzeTables analyzes the tables the claim and the completion
 * plan on, in a transaction of its own (outside any, on entry).  SKIP_LOCKED:
 * a table that autovacuum is working on is being analyzed anyway.
 */
void
TaskerAnalyzeTables(BlockNumber blocks)
{
	MemoryContext context = CurrentMemoryContext;
	volatile bool saw_rows = false;
	volatile bool failed = false;

	ereport(DEBUG1,
			(errmsg("tasker dispatcher: workflow_steps grew from %u to %u blocks since it was last analyzed; analyzing",
					analyzed_blocks, blocks)));
	PG_TRY();
	{
		bool		isnull = true;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "tasker dispatcher: analyzing");
		if (TaskerExtensionInstalled())
		{
			TaskerSpiExec("ANALYZE (SKIP_LOCKED) tasker.workflow_steps, tasker.tasks, tasker.workflow_step_edges",
						  0, NULL, NULL, NULL, SPI_OK_UTILITY);
			/* reltuples, as the analysis just set it (in place, visible at once) */
			TaskerSpiExec("SELECT reltuples > 0 FROM pg_catalog.pg_class"
						  " WHERE oid = 'tasker.workflow_steps'::pg_catalog.regclass",
						  0, NULL, NULL, NULL, SPI_OK_SELECT);
			saw_rows = SPI_processed == 1 &&
				DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) &&
				!isnull;
		}
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
	if (saw_rows)
		analyzed_blocks = blocks;
	else
		retry_not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   failed ? FAILED_RETRY_DELAY_MS : RETRY_DELAY_MS);
}
