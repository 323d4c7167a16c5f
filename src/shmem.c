/*-------------------------------------------------------------------------
 * shmem.c
 *	  Shared state of the background workers (placeholder until the
 *	  workers land: no dispatcher to wake yet).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "tasker.h"
#include "wakeup.h"
#include "workers.h"

void
TaskerInstallShmemHooks(void)
{
}

void
TaskerRegisterLauncher(void)
{
}

void
TaskerSignalDispatcher(Oid database_id)
{
}
