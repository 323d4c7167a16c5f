/*-------------------------------------------------------------------------
 * tasker.c
 *	  Module entry point: GUC definitions and, when preloaded, the shared
 *	  memory and background worker registrations.
 *
 * The library works both from shared_preload_libraries (background
 * workers run SQL-handler steps) and from a plain CREATE EXTENSION (the
 * SQL API and external workers only).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "tasker.h"
#include "workers.h"

PG_MODULE_MAGIC;

bool		tasker_enabled = true;
int			tasker_min_concurrent_steps = 3;
int			tasker_max_concurrent_steps = 12;
int			tasker_concurrency_cache_duration = 30;
int			tasker_poll_interval = 1000;
int			tasker_default_lease = 300;
double		tasker_backoff_base = 1.0;
double		tasker_backoff_multiplier = 2.0;
int			tasker_max_backoff = 300;
double		tasker_backoff_jitter = 0.1;
int			tasker_max_executors = 8;
int			tasker_executor_idle_timeout = 10000;
int			tasker_executor_batch_size = 32;
int			tasker_executor_commit_window = 10;
int			tasker_stuck_step_threshold = 300;
bool		tasker_publish_events = false;
int			tasker_max_template_steps = 1000;
int			tasker_max_step_dependencies = 200;
int			tasker_max_context_size = 16 * 1024;
int			tasker_max_results_size = 1024;

bool		tasker_preloaded = false;

void		_PG_init(void);

/*
 * DefineGucs declares every tasker.* setting.
 */
static void
DefineGucs(void)
{
	DefineCustomBoolVariable("tasker.enabled",
							 "Lets the background workers dispatch SQL-handler steps.",
							 "Off pauses dispatch without a restart; claims by external workers still work.",
							 &tasker_enabled, true, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.min_concurrent_steps",
							"Lower bound of the dynamic concurrency.",
							NULL, &tasker_min_concurrent_steps, 3, 1, 1024,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.max_concurrent_steps",
							"Upper bound of the dynamic concurrency.",
							NULL, &tasker_max_concurrent_steps, 12, 1, 1024,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.concurrency_cache_duration",
							"How long a computed concurrency figure is reused.",
							NULL, &tasker_concurrency_cache_duration, 30, 0, 3600,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.poll_interval",
							"How often a dispatcher wakes up when no one wakes it.",
							NULL, &tasker_poll_interval, 1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.default_lease",
							"Lease of a claimed step when claim_steps is given none.",
							NULL, &tasker_default_lease, 300, 1, 7 * 24 * 3600,
							PGC_USERSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomRealVariable("tasker.backoff_base",
							 "Retry delay in seconds before multiplication.",
							 NULL, &tasker_backoff_base, 1.0, 0.0, 86400.0,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("tasker.backoff_multiplier",
							 "Factor applied to the retry delay per attempt made.",
							 NULL, &tasker_backoff_multiplier, 2.0, 1.0, 100.0,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.max_backoff",
							"Upper bound of a computed retry delay.",
							NULL, &tasker_max_backoff, 300, 0, 7 * 24 * 3600,
							PGC_USERSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomRealVariable("tasker.backoff_jitter",
							 "Random spread of a computed retry delay, as a fraction of it.",
							 NULL, &tasker_backoff_jitter, 0.1, 0.0, 1.0,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.max_executors",
							"Most executor workers per database.",
							NULL, &tasker_max_executors, 8, 0, 1024,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.executor_idle_timeout",
							"An executor that finds no work for this long exits.",
							NULL, &tasker_executor_idle_timeout, 10000, 0, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.executor_batch_size",
							"Most steps an executor claims at a time.",
							"Fewer when steps are slow: as many as fit in tasker.executor_commit_window.",
							&tasker_executor_batch_size, 32, 1, 1000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.executor_commit_window",
							"Steps of one claimed batch commit together while their transaction is younger than this.",
							"0 commits every step on its own.",
							&tasker_executor_commit_window, 10, 0, 60 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.stuck_step_threshold",
							"A ready step no one claims for this long shows in tasker.stuck_steps.",
							NULL, &tasker_stuck_step_threshold, 300, 1, 7 * 24 * 3600,
							PGC_USERSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomBoolVariable("tasker.publish_events",
							 "Sends lifecycle events on the tasker_events channel.",
							 NULL, &tasker_publish_events, false, PGC_USERSET, 0,
							 NULL, NULL, NULL);

	/*
	 * Limits on what comes in (src/limits.c says why).  SUSET: a submitter
	 * or a worker must not lift them for itself.
	 */
	DefineCustomIntVariable("tasker.max_template_steps",
							"Most steps a task template may have.",
							NULL, &tasker_max_template_steps, 1000, 1, 1000000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.max_step_dependencies",
							"Most parents a step of a task template may have.",
							"A step's input carries each parent's results.",
							&tasker_max_step_dependencies, 200, 1, 1000000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.max_context_size",
							"Largest context a task may be created with.",
							"Every step's input carries the context.",
							&tasker_max_context_size, 16 * 1024, 1, 1024 * 1024,
							PGC_SUSET, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.max_results_size",
							"Largest results (or error document) a step may record.",
							"Each child's input carries its parents' results.",
							&tasker_max_results_size, 1024, 1, 1024 * 1024,
							PGC_SUSET, GUC_UNIT_KB, NULL, NULL, NULL);

	MarkGUCPrefixReserved("tasker");
}

/*
 * _PG_init defines the GUCs and, when preloaded, asks for shared memory and
 * registers the launcher.
 */
void
_PG_init(void)
{
	DefineGucs();

	if (!process_shared_preload_libraries_in_progress)
		return;

	tasker_preloaded = true;
	TaskerInstallShmemHooks();
	TaskerInstallUtilityHook();
	TaskerRegisterLauncher();
}
