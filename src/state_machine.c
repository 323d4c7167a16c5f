/*-------------------------------------------------------------------------
 * state_machine.c
 *	  The task and step state machines as transition tables, and the
 *	  trigger that checks every change of current_state against them.
 *
 * The API functions move states with compare-and-swap UPDATEs under a row
 * lock; the trigger is the single place that decides whether a move is
 * legal, so a hand-written UPDATE by an operator is held to the same rules.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "state_machine.h"
#include "workers.h"

typedef struct StateMove
{
	const char *from_state;
	const char *to_state;
} StateMove;

static const char *const task_states[] = {
	"pending", "in_progress", "complete", "error", "cancelled",
	"resolved_manually", NULL
};

static const char *const step_states[] = {
	"pending", "in_progress", "waiting_for_retry", "complete", "error",
	"cancelled", "resolved_manually", NULL
};

/* Legal task moves.  complete, cancelled and resolved_manually are final. */
static const StateMove task_moves[] = {
	{"pending", "in_progress"},
	{"pending", "complete"},		/* no steps, or every step bypassed */
	{"pending", "error"},			/* failures recorded before any claim */
	{"pending", "cancelled"},
	{"pending", "resolved_manually"},
	{"in_progress", "complete"},
	{"in_progress", "error"},
	{"in_progress", "cancelled"},
	{"in_progress", "resolved_manually"},
	{"error", "pending"},			/* retry_task / retry_step */
	{"error", "complete"},			/* the failed step was resolved by hand */
	{"error", "cancelled"},
	{"error", "resolved_manually"},
	{NULL, NULL}
};

/* Legal step moves.  complete, cancelled and resolved_manually are final. */
static const StateMove step_moves[] = {
	{"pending", "in_progress"},
	{"pending", "cancelled"},
	{"pending", "resolved_manually"},
	{"in_progress", "complete"},
	{"in_progress", "waiting_for_retry"},
	{"in_progress", "error"},
	{"in_progress", "cancelled"},
	{"in_progress", "resolved_manually"},
	{"waiting_for_retry", "in_progress"},
	{"waiting_for_retry", "error"},		/* retry_limit lowered, or reaped */
	{"waiting_for_retry", "cancelled"},
	{"waiting_for_retry", "resolved_manually"},
	{"error", "pending"},			/* retry_step: a fresh set of attempts */
	{"error", "resolved_manually"},
	{"error", "cancelled"},
	{NULL, NULL}
};

static const char *
MachineName(TaskerMachine machine)
{
	return machine == TASKER_MACHINE_TASK ? "task" : "step";
}

/*
 * TaskerStateIsKnown reports whether state names a state of the machine.
 */
bool
TaskerStateIsKnown(TaskerMachine machine, const char *state)
{
	const char *const *states;

	states = machine == TASKER_MACHINE_TASK ? task_states : step_states;
	for (; *states != NULL; states++)
		if (strcmp(*states, state) == 0)
			return true;
	return false;
}

/*
 * TaskerTransitionAllowed looks the move up in the machine's table.
 */
bool
TaskerTransitionAllowed(TaskerMachine machine, const char *from_state,
						const char *to_state)
{
	const StateMove *move;

	move = machine == TASKER_MACHINE_TASK ? task_moves : step_moves;
	for (; move->from_state != NULL; move++)
		if (strcmp(move->from_state, from_state) == 0 &&
			strcmp(move->to_state, to_state) == 0)
			return true;
	return false;
}

/*
 * TaskerCheckTransition raises an error naming both states when the move
 * is not in the table.
 */
void
TaskerCheckTransition(TaskerMachine machine, const char *from_state,
					  const char *to_state)
{
	if (!TaskerStateIsKnown(machine, to_state))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown %s state \"%s\"", MachineName(machine), to_state)));
	if (!TaskerTransitionAllowed(machine, from_state, to_state))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("illegal %s transition from \"%s\" to \"%s\"",
						MachineName(machine), from_state, to_state),
				 errhint("See tasker.state_machine() for the legal moves.")));
}

static TaskerMachine
MachineFromText(text *machine_text)
{
	char	   *name = text_to_cstring(machine_text);

	if (strcmp(name, "task") == 0)
		return TASKER_MACHINE_TASK;
	if (strcmp(name, "step") == 0)
		return TASKER_MACHINE_STEP;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown state machine \"%s\"", name),
			 errhint("Use \"task\" or \"step\".")));
	pg_unreachable();
}

PG_FUNCTION_INFO_V1(tasker_transition_allowed);

/*
 * tasker_transition_allowed is tasker.transition_allowed(machine, from, to).
 */
Datum
tasker_transition_allowed(PG_FUNCTION_ARGS)
{
	TaskerMachine machine = MachineFromText(PG_GETARG_TEXT_PP(0));
	char	   *from_state = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *to_state = text_to_cstring(PG_GETARG_TEXT_PP(2));

	PG_RETURN_BOOL(TaskerTransitionAllowed(machine, from_state, to_state));
}

PG_FUNCTION_INFO_V1(tasker_state_machine);

/*
 * tasker_state_machine lists every legal move of both machines.
 */
Datum
tasker_state_machine(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			m;

	InitMaterializedSRF(fcinfo, 0);
	for (m = 0; m < 2; m++)
	{
		const StateMove *move = m == 0 ? task_moves : step_moves;

		for (; move->from_state != NULL; move++)
		{
			Datum		values[3];
			bool		nulls[3] = {false, false, false};

			values[0] = CStringGetTextDatum(m == 0 ? "task" : "step");
			values[1] = CStringGetTextDatum(move->from_state);
			values[2] = CStringGetTextDatum(move->to_state);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
								 values, nulls);
		}
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(tasker_check_transition_trigger);

/*
 * tasker_check_transition_trigger is a BEFORE UPDATE row trigger on tasks
 * and workflow_steps (TG_ARGV[0] is "task" or "step") that refuses any
 * change of current_state the machine does not allow.
 */
Datum
tasker_check_transition_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	tupdesc;
	int			attnum;
	bool		old_null;
	bool		new_null;
	Datum		old_state;
	Datum		new_state;
	TaskerMachine machine;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ||
		trigdata->tg_trigger->tgnargs != 1)
		elog(ERROR, "tasker_check_transition_trigger: must be a BEFORE UPDATE row trigger with one argument");

	machine = strcmp(trigdata->tg_trigger->tgargs[0], "task") == 0 ?
		TASKER_MACHINE_TASK : TASKER_MACHINE_STEP;
	tupdesc = RelationGetDescr(trigdata->tg_relation);
	attnum = SPI_fnumber(tupdesc, "current_state");
	if (attnum <= 0)
		elog(ERROR, "tasker_check_transition_trigger: no current_state column");

	old_state = heap_getattr(trigdata->tg_trigtuple, attnum, tupdesc, &old_null);
	new_state = heap_getattr(trigdata->tg_newtuple, attnum, tupdesc, &new_null);
	if (!old_null && !new_null)
	{
		char	   *from_state = TextDatumGetCString(old_state);
		char	   *to_state = TextDatumGetCString(new_state);

		if (strcmp(from_state, to_state) != 0)
		{
			double		duration = -1;

			TaskerCheckTransition(machine, from_state, to_state);

			/* metrics: how long the attempt that completed a step took */
			if (machine == TASKER_MACHINE_STEP && strcmp(to_state, "complete") == 0)
			{
				int			started_attnum = SPI_fnumber(tupdesc, "last_attempted_at");
				bool		started_null = true;
				Datum		started = (Datum) 0;

				if (started_attnum > 0)
					started = heap_getattr(trigdata->tg_newtuple, started_attnum, tupdesc,
										   &started_null);
				if (!started_null)
					duration = (double) (GetCurrentTimestamp() - DatumGetTimestampTz(started))
						/ USECS_PER_SEC;
			}
			TaskerMetricsNoteMove(machine == TASKER_MACHINE_TASK, to_state, duration);
		}
	}
	return PointerGetDatum(trigdata->tg_newtuple);
}
