#!/usr/bin/env node
// `dcw`, the DataComp Workbench command line. The CLI is TypeScript run through tsx, so the code that
// runs here is the very code the browser runs (src/core), with no separate build step.
import { register } from 'tsx/esm/api';

register();
await import('../server/cli/main.ts');
