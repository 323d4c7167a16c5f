/*-------------------------------------------------------------------------
 * metrics.c
 *	  Counters for tasker.metrics(): transitions into each state and the
 *	  durations of the attempts that completed, per database, since the
 *	  server started.
 *
 * The state machine trigger notes each move in backend memory, one frame
 * per subtransaction level (a frame is dropped when its subtransaction
 * aborts: the failed handler's rolled-back completion is not counted), and
 * the sums reach shared memory when the top transaction commits.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "tasker.h"
#include "workers.h"

static const char *const task_state_names[TASKER_TASK_STATES] = {
	"pending", "in_progress", "complete", "error", "cancelled", "resolved_manually"
};
static const char *const step_state_names[TASKER_STEP_STATES] = {
	"pending", "in_progress", "waiting_for_retry", "complete", "error", "cancelled",
	"resolved_manually"
};

/* upper bounds of the histogram buckets, in seconds (the last is +Inf) */
const double tasker_duration_bounds[TASKER_DURATION_BUCKETS] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, -1
};

typedef struct PendingFrame
{
	int			nest_level;
	TaskerMetrics counts;
} PendingFrame;

#define MAX_FRAMES 64
static PendingFrame frames[MAX_FRAMES];
static int	n_frames = 0;
static bool callbacks_registered = false;

static int
StateIndex(const char *const *names, int n, const char *state)
{
	int			i;

	for (i = 0; i < n; i++)
		if (strcmp(names[i], state) == 0)
			return i;
	return -1;
}

static void
AddMetrics(TaskerMetrics *into, const TaskerMetrics *from)
{
	int			i;

	for (i = 0; i < TASKER_TASK_STATES; i++)
		into->task_moves[i] += from->task_moves[i];
	for (i = 0; i < TASKER_STEP_STATES; i++)
		into->step_moves[i] += from->step_moves[i];
	for (i = 0; i < TASKER_DURATION_BUCKETS; i++)
		into->duration_buckets[i] += from->duration_buckets[i];
	into->duration_sum += from->duration_sum;
	into->duration_count += from->duration_count;
}

static void
FlushToShared(void)
{
	TaskerMetrics total;
	TaskerDatabaseSlot *slot;
	int			i;

	memset(&total, 0, sizeof(total));
	for (i = 0; i < n_frames; i++)
		AddMetrics(&total, &frames[i].counts);
	n_frames = 0;
	if (tasker_shared == NULL)
		return;
	LWLockAcquire(tasker_shared->lock, LW_EXCLUSIVE);
	slot = TaskerFindDatabaseSlot(MyDatabaseId, true);
	if (slot != NULL)
		AddMetrics(&slot->metrics, &total);
	LWLockRelease(tasker_shared->lock);
}

static void
MetricsXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (n_frames > 0)
				FlushToShared();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			n_frames = 0;
			break;
		default:
			break;
	}
}

static void
MetricsSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	if (n_frames == 0 || frames[n_frames - 1].nest_level < level)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
		n_frames--;				/* the subtransaction's moves never happened */
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		/* merge into the parent level's frame */
		frames[n_frames - 1].nest_level = level - 1;
		if (n_frames >= 2 && frames[n_frames - 2].nest_level == level - 1)
		{
			AddMetrics(&frames[n_frames - 2].counts, &frames[n_frames - 1].counts);
			n_frames--;
		}
	}
}

/*
 * TaskerMetricsNoteMove counts a transition into to_state; duration >= 0 is
 * the length of a step attempt that completed, in seconds.
 */
void
TaskerMetricsNoteMove(bool is_task, const char *to_state, double duration)
{
	int			level = GetCurrentTransactionNestLevel();
	PendingFrame *frame;
	int			idx;
	int			b;

	if (tasker_shared == NULL)
		return;
	if (!callbacks_registered)
	{
		RegisterXactCallback(MetricsXactCallback, NULL);
		RegisterSubXactCallback(MetricsSubXactCallback, NULL);
		callbacks_registered = true;
	}
	if (n_frames == 0 || frames[n_frames - 1].nest_level < level)
	{
		if (n_frames >= MAX_FRAMES)
			return;				/* absurdly deep nesting: stop counting */
		frame = &frames[n_frames++];
		memset(frame, 0, sizeof(*frame));
		frame->nest_level = level;
	}
	frame = &frames[n_frames - 1];

	if (is_task)
	{
		idx = StateIndex(task_state_names, TASKER_TASK_STATES, to_state);
		if (idx >= 0)
			frame->counts.task_moves[idx]++;
		return;
	}
	idx = StateIndex(step_state_names, TASKER_STEP_STATES, to_state);
	if (idx >= 0)
		frame->counts.step_moves[idx]++;
	if (duration >= 0)
	{
		for (b = 0; b < TASKER_DURATION_BUCKETS - 1; b++)
			if (duration <= tasker_duration_bounds[b])
				break;
		frame->counts.duration_buckets[b]++;
		frame->counts.duration_sum += duration;
		frame->counts.duration_count++;
	}
}

PG_FUNCTION_INFO_V1(tasker_metric_counters);

/*
 * tasker_metric_counters returns this database's counters as rows
 * (metric, label, value): transitions by machine and state, the duration
 * histogram (cumulative, label = upper bound or +Inf), its sum and count.
 */
Datum
tasker_metric_counters(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TaskerMetrics m;
	TaskerDatabaseSlot *slot;
	uint64		cumulative = 0;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (tasker_shared == NULL)
		return (Datum) 0;

	memset(&m, 0, sizeof(m));
	LWLockAcquire(tasker_shared->lock, LW_SHARED);
	slot = TaskerFindDatabaseSlot(MyDatabaseId, false);
	if (slot != NULL)
		m = slot->metrics;
	LWLockRelease(tasker_shared->lock);

#define PUT(metric, label, value) \
	do { \
		Datum		v[3]; \
		bool		n[3] = {false, false, false}; \
		v[0] = CStringGetTextDatum(metric); \
		v[1] = CStringGetTextDatum(label); \
		v[2] = Float8GetDatum(value); \
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n); \
	} while (0)

	for (i = 0; i < TASKER_TASK_STATES; i++)
		PUT("task_transitions", task_state_names[i], (double) m.task_moves[i]);
	for (i = 0; i < TASKER_STEP_STATES; i++)
		PUT("step_transitions", step_state_names[i], (double) m.step_moves[i]);
	for (i = 0; i < TASKER_DURATION_BUCKETS; i++)
	{
		cumulative += m.duration_buckets[i];
		PUT("step_duration_bucket",
			tasker_duration_bounds[i] < 0 ? "+Inf" : psprintf("%g", tasker_duration_bounds[i]),
			(double) cumulative);
	}
	PUT("step_duration_sum", "", m.duration_sum);
	PUT("step_duration_count", "", (double) m.duration_count);
	return (Datum) 0;
}
