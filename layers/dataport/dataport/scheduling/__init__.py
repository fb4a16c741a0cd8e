"""The logic behind backup schedules: the /backup-schedules routes (`routes`), the dispatcher's
tick (`dispatcher`), the retention sweep (`retention`), and how a run starts a backup as its
owner (`launcher`). The decisions themselves are in the domain package `dataport.schedules`."""
