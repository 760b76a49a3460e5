/* LD_PRELOAD for sysbench 1.0.20 linked with libmariadb (Debian's): its reconnect after a lost
 * connection calls mysql_close() and then mysql_real_connect() on the same MYSQL handle
 * (drv_mysql.c, mysql_drv_reconnect). libmariadb's mysql_close() frees the handle's options, so
 * that mysql_real_connect() crashes (SIGSEGV in mysql_optionsv): akopytov/sysbench#527, fixed
 * by the still open pull request #528, which calls mysql_init() again before reconnecting.
 *
 * This does the same from outside: a handle the caller allocated itself (mysql_init(ptr)) is
 * initialised again right after mysql_close(), so it is ready for the next connect. Handles the
 * library allocates (mysql_init(NULL)) are freed by mysql_close() and left alone. The cost: the
 * few bytes mysql_init() allocates leak when sysbench frees a handle at its end.
 *
 *   gcc -shared -fPIC -O2 -o reconnect_shim.so reconnect_shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>

typedef struct st_mysql MYSQL;

#define MAX_HANDLES 4096
static void *owned[MAX_HANDLES]; /* handles initialised with a caller's pointer */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static MYSQL *(*real_init)(MYSQL *);
static void (*real_close)(MYSQL *);

static void resolve(void)
{
  if (!real_init)
    real_init = (MYSQL *(*)(MYSQL *)) dlsym(RTLD_NEXT, "mysql_init");
  if (!real_close)
    real_close = (void (*)(MYSQL *)) dlsym(RTLD_NEXT, "mysql_close");
}

/* set (value = handle) or clear (value = NULL) the slot of `handle` */
static void remember(MYSQL *handle, void *value)
{
  pthread_mutex_lock(&lock);
  for (size_t i = 0; i < MAX_HANDLES; i++)
    if (owned[i] == handle) { owned[i] = value; handle = NULL; break; }
  if (handle && value)
    for (size_t i = 0; i < MAX_HANDLES; i++)
      if (!owned[i]) { owned[i] = value; break; }
  pthread_mutex_unlock(&lock);
}

static int is_owned(MYSQL *handle)
{
  int found = 0;
  pthread_mutex_lock(&lock);
  for (size_t i = 0; i < MAX_HANDLES && !found; i++)
    found = owned[i] == handle;
  pthread_mutex_unlock(&lock);
  return found;
}

MYSQL *mysql_init(MYSQL *handle)
{
  resolve();
  MYSQL *result = real_init(handle);
  if (handle)
    remember(handle, handle);
  else if (result)
    remember(result, NULL); /* the library's own: an address an earlier, freed handle had */
  return result;
}

void mysql_close(MYSQL *handle)
{
  resolve();
  int reinit = handle && is_owned(handle);
  real_close(handle);
  if (reinit)
    real_init(handle);
}
