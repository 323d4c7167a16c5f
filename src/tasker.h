/*-------------------------------------------------------------------------
 * tasker.h
 *	  Shared declarations: GUC variables and cross-file entry points.
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_H
#define TASKER_H

#include "postgres.h"

/* GUC variables (defined in tasker.c) */
extern bool tasker_enabled;
extern int	tasker_min_concurrent_steps;
extern int	tasker_max_concurrent_steps;
extern int	tasker_concurrency_cache_duration;	/* seconds */
extern int	tasker_poll_interval;	/* milliseconds */
extern int	tasker_default_lease;	/* seconds */
extern double tasker_backoff_base;	/* seconds */
extern double tasker_backoff_multiplier;
extern int	tasker_max_backoff;		/* seconds */
extern double tasker_backoff_jitter;	/* fraction of the delay */
extern int	tasker_max_executors;
extern int	tasker_executor_idle_timeout;	/* milliseconds */
extern int	tasker_executor_batch_size;
extern int	tasker_executor_commit_window;	/* milliseconds */
extern int	tasker_stuck_step_threshold;	/* seconds */
extern bool tasker_publish_events;
extern int	tasker_max_template_steps;
extern int	tasker_max_step_dependencies;
extern int	tasker_max_context_size;	/* kB */
extern int	tasker_max_results_size;	/* kB */

/* true when loaded through shared_preload_libraries */
extern bool tasker_preloaded;

/* limits.c: raises 54000 when a value outgrows the size limit named by setting */
extern void TaskerCheckSize(const char *setting, Datum value, const char *what);

/* state_counts.c: changes of state counted by this backend so far */
extern uint64 TaskerCountedMoves(void);

#endif							/* TASKER_H */
