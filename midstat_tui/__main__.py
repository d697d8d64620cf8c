from midstat_tui.cli import main

raise SystemExit(main())
