/** Training data and recipes: scales, learning-rate schedule, webdataset loader, image augmentation. */
export * from './augment.ts';
export * from './loader.ts';
export * from './scales.ts';
export * from './schedule.ts';
