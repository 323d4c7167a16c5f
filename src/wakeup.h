/*-------------------------------------------------------------------------
 * wakeup.h
 *	  Commit-time wake-up of the dispatcher and the launcher.
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_WAKEUP_H
#define TASKER_WAKEUP_H

extern void TaskerRequestWakeup(void);
extern void TaskerRequestLauncherWakeup(void);

/* shmem.c: set the latch of the database's dispatcher, if it has one */
extern void TaskerSignalDispatcher(Oid database_id);

#endif
