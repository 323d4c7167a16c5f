/*-------------------------------------------------------------------------
 * workers.h
 *	  Shared memory and background workers: launcher, dispatcher, executor.
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_WORKERS_H
#define TASKER_WORKERS_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "storage/block.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

#define TASKER_MAX_DATABASES 64
#define TASKER_MAX_EXECUTORS 256

typedef enum TaskerWorkerKind
{
	TASKER_LAUNCHER,
	TASKER_DISPATCHER,
	TASKER_EXECUTOR
} TaskerWorkerKind;

#define TASKER_TASK_STATES 6
#define TASKER_STEP_STATES 7
#define TASKER_DURATION_BUCKETS 14

/* Counters behind tasker.metrics(), since the server started. */
typedef struct TaskerMetrics
{
	uint64		task_moves[TASKER_TASK_STATES];	/* transitions into each state */
	uint64		step_moves[TASKER_STEP_STATES];
	uint64		duration_buckets[TASKER_DURATION_BUCKETS];	/* attempts ending in complete */
	double		duration_sum;
	uint64		duration_count;
} TaskerMetrics;

/* One per database the launcher knows about. */
typedef struct TaskerDatabaseSlot
{
	Oid			database_id;	/* InvalidOid: free */
	pid_t		dispatcher_pid; /* 0 when none runs */
	Latch	   *dispatcher_latch;
	bool		no_extension;	/* dispatcher found no tasker here */
	uint32		extension_epoch;	/* bumped at each CREATE EXTENSION's commit */
	TimestampTz stop_until;		/* DROP DATABASE: no dispatcher until then */
	TimestampTz dispatcher_since;
	TaskerMetrics metrics;
} TaskerDatabaseSlot;

/* One per running executor. */
typedef struct TaskerExecutorSlot
{
	pid_t		pid;			/* 0: free */
	Oid			database_id;
	Latch	   *latch;
	bool		idle;
	int64		step_id;		/* 0 when between steps */
	Oid			role_id;
	TimestampTz since;
} TaskerExecutorSlot;

typedef struct TaskerShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	TimestampTz launcher_since;
	TaskerDatabaseSlot databases[TASKER_MAX_DATABASES];
	TaskerExecutorSlot executors[TASKER_MAX_EXECUTORS];
} TaskerShared;

extern TaskerShared *tasker_shared;

/* shmem.c */
extern void TaskerInstallShmemHooks(void);
extern TaskerDatabaseSlot *TaskerFindDatabaseSlot(Oid database_id, bool create);
extern void TaskerWakeLauncher(void);
extern void TaskerNoteExtensionCreated(Oid database_id);
extern void TaskerWakeIdleExecutors(Oid database_id, int how_many);
extern int	TaskerCountExecutors(Oid database_id);
extern void TaskerRequestDatabaseStop(Oid database_id);

/* launcher.c, dispatcher.c, executor.c */
extern void TaskerRegisterLauncher(void);
extern bool TaskerStartDispatcher(Oid database_id, void **handle);
extern bool TaskerStartExecutor(Oid database_id);
PGDLLEXPORT void TaskerLauncherMain(Datum main_arg);
PGDLLEXPORT void TaskerDispatcherMain(Datum main_arg);
PGDLLEXPORT void TaskerExecutorMain(Datum main_arg);

/* table_growth.c: the dispatcher analyzes tasker's tables as they outgrow their statistics */
extern bool TaskerStepsOutgrewStatistics(void);
extern void TaskerAnalyzeTables(void);

/* metrics.c */
extern const double tasker_duration_bounds[TASKER_DURATION_BUCKETS];
extern void TaskerMetricsNoteMove(bool is_task, const char *to_state, double duration);

/* utility_hook.c */
extern void TaskerInstallUtilityHook(void);

/* concurrency.c */
typedef struct TaskerConcurrencyInputs
{
	int			active_connections;
	int			max_connections;
	int			busy_workers;
	int			max_workers;
	double		task_load;
	double		step_load;
	int			min_concurrency;
	int			max_concurrency;
} TaskerConcurrencyInputs;

typedef struct TaskerConcurrency
{
	int			concurrency;
	int			slot_term;
	int			load_term;
	double		connection_pressure;
	double		worker_pressure;
	const char *pressure_level;
	double		combined_load;
} TaskerConcurrency;

extern TaskerConcurrency TaskerComputeConcurrency(const TaskerConcurrencyInputs *in);
extern int	TaskerCurrentConcurrency(void);

#endif
