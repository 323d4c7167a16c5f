/*-------------------------------------------------------------------------
 * workers.h
 *	  Shared memory and background workers: launcher, dispatcher, executor.
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_WORKERS_H
#define TASKER_WORKERS_H

extern void TaskerInstallShmemHooks(void);
extern void TaskerRegisterLauncher(void);

#endif
