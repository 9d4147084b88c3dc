from pumphouse.cli import main

raise SystemExit(main())
