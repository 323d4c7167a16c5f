/*-------------------------------------------------------------------------
 * state_machine.h
 *	  The task and step state machines: which moves are legal.
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_STATE_MACHINE_H
#define TASKER_STATE_MACHINE_H

typedef enum TaskerMachine
{
	TASKER_MACHINE_TASK,
	TASKER_MACHINE_STEP
} TaskerMachine;

extern bool TaskerStateIsKnown(TaskerMachine machine, const char *state);
extern bool TaskerTransitionAllowed(TaskerMachine machine,
									const char *from_state,
									const char *to_state);
extern void TaskerCheckTransition(TaskerMachine machine,
								  const char *from_state,
								  const char *to_state);

#endif
