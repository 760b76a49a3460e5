from hakeeper.cli import main

raise SystemExit(main())
