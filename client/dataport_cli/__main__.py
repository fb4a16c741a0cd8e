from dataport_cli.main import main

raise SystemExit(main())
